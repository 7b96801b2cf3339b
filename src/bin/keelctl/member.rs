//! `member add|remove|update|list|promote`, with etcdctl's checks, messages, exit codes and
//! output formats. Member IDs are hexadecimal on the command line; `-w fields` and `-w
//! table` exist only for `member list` (the other subcommands fail after their change is
//! made, as etcdctl's do).

use clap::{Args, Subcommand};
use keel_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberRemoveRequest, MemberUpdateRequest, ResponseHeader,
};

use crate::error::CliError;
use crate::global::Format;
use crate::gofmt::{json_string, quote, JsonObject};
use crate::print::{self, Out};
use crate::table;
use crate::Ctx;

/// `member <subcommand>`: membership related commands.
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Adds a member into the cluster.
    Add(AddArgs),
    /// Removes a member from the cluster.
    Remove(IdArgs),
    /// Updates a member in the cluster.
    Update(UpdateArgs),
    /// Lists all members in the cluster.
    ///
    /// When --write-out is set to simple, this command prints out comma-separated member
    /// lists for each endpoint. The items in the lists are ID, Status, Name, Peer Addrs,
    /// Client Addrs, Is Learner.
    List(ListArgs),
    /// Promotes a non-voting member in the cluster.
    Promote(IdArgs),
}

/// `member add <memberName> [options]`.
#[derive(Args, Debug)]
pub struct AddArgs {
    /// The new member's name.
    pub args: Vec<String>,
    /// Comma separated peer URLs for the new member.
    #[arg(long, default_value = "")]
    pub peer_urls: String,
    /// Indicates if the new member is raft learner.
    #[arg(long)]
    pub learner: bool,
}

/// A subcommand that takes one member ID (hexadecimal).
#[derive(Args, Debug)]
pub struct IdArgs {
    /// The member ID, in hexadecimal.
    pub args: Vec<String>,
}

/// `member update <memberID> [options]`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The member ID, in hexadecimal.
    pub args: Vec<String>,
    /// Comma separated peer URLs for the updated member.
    #[arg(long, default_value = "")]
    pub peer_urls: String,
}

/// `member list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Ignored, as etcdctl ignores them.
    pub args: Vec<String>,
}

/// Runs a member subcommand.
pub fn run(ctx: &Ctx, command: &MemberCommand) -> Result<(), CliError> {
    match command {
        MemberCommand::Add(args) => add(ctx, args),
        MemberCommand::Remove(args) => remove(ctx, args),
        MemberCommand::Update(args) => update(ctx, args),
        MemberCommand::List(_) => list(ctx),
        MemberCommand::Promote(args) => promote(ctx, args),
    }
}

/// Go's `strconv.ParseUint(text, 16, 64)`, with its error text.
pub fn parse_hex_id(text: &str) -> Result<u64, String> {
    let error = |what: &str| {
        format!(
            "strconv.ParseUint: parsing {}: {what}",
            quote(text.as_bytes())
        )
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(error("invalid syntax"));
    }
    u64::from_str_radix(text, 16).map_err(|_| error("value out of range"))
}

/// The one member ID argument, or etcdctl's error.
fn member_id(args: &[String]) -> Result<u64, CliError> {
    if args.len() != 1 {
        return Err(CliError::bad_args("member ID is not provided"));
    }
    parse_hex_id(&args[0])
        .map_err(|e| CliError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

/// A member as etcdctl's JSON (the protobuf struct's `omitempty` names).
pub fn member_json(member: &Member) -> String {
    JsonObject::new()
        .u64("ID", member.id)
        .str("name", &member.name)
        .list(
            "peerURLs",
            member.peer_ur_ls.iter().map(|u| json_string(u)).collect(),
        )
        .list(
            "clientURLs",
            member.client_ur_ls.iter().map(|u| json_string(u)).collect(),
        )
        .bool("isLearner", member.is_learner)
        .finish()
}

/// A response carrying a header and the member list, as JSON.
fn members_json(
    header: &Option<ResponseHeader>,
    member: Option<&Member>,
    members: &[Member],
) -> String {
    JsonObject::new()
        .raw("header", print::header_json(header))
        .raw("member", member.map(member_json))
        .list("members", members.iter().map(member_json).collect())
        .finish()
}

fn add(ctx: &Ctx, args: &AddArgs) -> Result<(), CliError> {
    let Some(name) = args.args.first() else {
        return Err(CliError::bad_args("member name not provided"));
    };
    if args.args.len() > 1 {
        let mut message = "too many arguments".to_string();
        for arg in &args.args {
            if arg.to_lowercase().starts_with("http") {
                message.push_str(&format!(", did you mean --peer-urls={arg}"));
            }
        }
        return Err(CliError::bad_args(message));
    }
    if args.peer_urls.is_empty() {
        return Err(CliError::bad_args("member peer urls not provided"));
    }
    let urls: Vec<String> = args.peer_urls.split(',').map(str::to_string).collect();
    let client = ctx.client()?;
    let response = client.call(client.cluster().member_add(MemberAddRequest {
        peer_ur_ls: urls,
        is_learner: args.learner,
    }))?;
    let new_member = response.member.clone().unwrap_or_default();
    let cluster_id = response.header.unwrap_or_default().cluster_id;
    match ctx.out.format {
        Format::Simple => {
            println!(
                "Member {:16x} added to cluster {:16x}",
                new_member.id, cluster_id
            );
            let mut conf = Vec::new();
            for member in &response.members {
                let shown = if member.id == new_member.id {
                    name.as_str()
                } else {
                    member.name.as_str()
                };
                for url in &member.peer_ur_ls {
                    conf.push(format!("{shown}={url}"));
                }
            }
            println!();
            println!("ETCD_NAME={}", quote(name.as_bytes()));
            println!("ETCD_INITIAL_CLUSTER={}", quote(conf.join(",").as_bytes()));
            println!(
                "ETCD_INITIAL_ADVERTISE_PEER_URLS={}",
                quote(args.peer_urls.as_bytes())
            );
            println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        Format::Json => println!(
            "{}",
            members_json(
                &response.header,
                response.member.as_ref(),
                &response.members
            )
        ),
        Format::Protobuf => print::protobuf(&response),
        Format::Fields | Format::Table => return Err(print::unsupported(ctx.out.format)),
    }
    Ok(())
}

/// The output of remove, update and promote: `Member <id> <verb> cluster <cluster id>`.
fn print_changed(
    out: Out,
    id: u64,
    verb: &str,
    header: &Option<ResponseHeader>,
    members: &[Member],
    message: &impl prost::Message,
) -> Result<(), CliError> {
    let cluster_id = header.unwrap_or_default().cluster_id;
    match out.format {
        Format::Simple => println!("Member {id:16x} {verb} cluster {cluster_id:16x}"),
        Format::Json => println!("{}", members_json(header, None, members)),
        Format::Protobuf => print::protobuf(message),
        Format::Fields | Format::Table => return Err(print::unsupported(out.format)),
    }
    Ok(())
}

fn remove(ctx: &Ctx, args: &IdArgs) -> Result<(), CliError> {
    let id = member_id(&args.args)?;
    let client = ctx.client()?;
    let response = client.call(client.cluster().member_remove(MemberRemoveRequest { id }))?;
    print_changed(
        ctx.out,
        id,
        "removed from",
        &response.header,
        &response.members,
        &response,
    )
}

fn update(ctx: &Ctx, args: &UpdateArgs) -> Result<(), CliError> {
    let id = member_id(&args.args)?;
    if args.peer_urls.is_empty() {
        return Err(CliError::bad_args("member peer urls not provided"));
    }
    let urls: Vec<String> = args.peer_urls.split(',').map(str::to_string).collect();
    let client = ctx.client()?;
    let response = client.call(client.cluster().member_update(MemberUpdateRequest {
        id,
        peer_ur_ls: urls,
    }))?;
    print_changed(
        ctx.out,
        id,
        "updated in",
        &response.header,
        &response.members,
        &response,
    )
}

fn promote(ctx: &Ctx, args: &IdArgs) -> Result<(), CliError> {
    let id = member_id(&args.args)?;
    let client = ctx.client()?;
    let response = client.call(client.cluster().member_promote(MemberPromoteRequest { id }))?;
    print_changed(
        ctx.out,
        id,
        "promoted in",
        &response.header,
        &response.members,
        &response,
    )
}

/// The member list etcd's Go client asks for (linearizable, as 3.5's client asks).
pub fn member_list(ctx: &Ctx) -> Result<MemberListResponse, CliError> {
    let client = ctx.client()?;
    client.call(
        client
            .cluster()
            .member_list(MemberListRequest { linearizable: true }),
    )
}

fn list(ctx: &Ctx) -> Result<(), CliError> {
    let response = member_list(ctx)?;
    print_list(ctx.out, &response)
}

/// The rows of `member list`'s table and simple output.
fn list_rows(response: &MemberListResponse) -> Vec<Vec<String>> {
    response
        .members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

/// A MemberListResponse in every format.
pub fn print_list(out: Out, response: &MemberListResponse) -> Result<(), CliError> {
    match out.format {
        Format::Simple => {
            for row in list_rows(response) {
                println!("{}", row.join(", "));
            }
        }
        Format::Table => print!(
            "{}",
            table::render(
                &[
                    "ID",
                    "Status",
                    "Name",
                    "Peer Addrs",
                    "Client Addrs",
                    "Is Learner"
                ],
                &list_rows(response),
            )
        ),
        Format::Json if out.hex => println!("{}", list_hex_json(response)),
        Format::Json => println!(
            "{}",
            members_json(&response.header, None, &response.members)
        ),
        Format::Fields => {
            print::fields_header(&response.header);
            for member in &response.members {
                println!("\"ID\" : {}", member.id);
                println!("\"Name\" : {}", quote(member.name.as_bytes()));
                for url in &member.peer_ur_ls {
                    println!("\"PeerURL\" : {}", quote(url.as_bytes()));
                }
                for url in &member.client_ur_ls {
                    println!("\"ClientURL\" : {}", quote(url.as_bytes()));
                }
                println!("\"IsLearner\" : {}", member.is_learner);
                println!();
            }
        }
        Format::Protobuf => print::protobuf(response),
    }
    Ok(())
}

/// etcdctl 3.5's `-w json --hex member list`: ids as hexadecimal strings, written by hand
/// (no revision, names unescaped, `clientURLS` spelled so, no learner flag, `null` for a
/// member without URLs).
fn list_hex_json(response: &MemberListResponse) -> String {
    let h = response.header.unwrap_or_default();
    let urls = |list: &[String]| {
        if list.is_empty() {
            "null".to_string()
        } else {
            format!(
                "[{}]",
                list.iter()
                    .map(|u| json_string(u))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
    };
    let mut out = format!(
        "{{\"header\":{{\"cluster_id\":\"{:x}\",\"member_id\":\"{:x}\",\"raft_term\":{}}}",
        h.cluster_id, h.member_id, h.raft_term
    );
    for (i, member) in response.members.iter().enumerate() {
        out.push_str(if i == 0 { ",\"members\":[" } else { "," });
        out.push_str(&format!(
            "{{\"ID\":\"{:x}\",\"name\":\"{}\",\"peerURLs\":{},\"clientURLS\":{}}}",
            member.id,
            member.name,
            urls(&member.peer_ur_ls),
            urls(&member.client_ur_ls)
        ));
        if i + 1 == response.members.len() {
            out.push(']');
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_parse_as_hex() {
        assert_eq!(parse_hex_id("9b75113f3950dbce"), Ok(0x9b75113f3950dbce));
        assert_eq!(
            parse_hex_id("zz"),
            Err("strconv.ParseUint: parsing \"zz\": invalid syntax".to_string())
        );
        assert_eq!(
            parse_hex_id("1ffffffffffffffff"),
            Err("strconv.ParseUint: parsing \"1ffffffffffffffff\": value out of range".to_string())
        );
    }

    #[test]
    fn hex_json_has_etcdctls_hand_written_shape() {
        let response = MemberListResponse {
            header: Some(ResponseHeader {
                cluster_id: 0xab,
                member_id: 0xcd,
                revision: 3,
                raft_term: 2,
            }),
            members: vec![
                Member {
                    id: 0x10,
                    name: "m0".to_string(),
                    peer_ur_ls: vec!["http://a:1".to_string()],
                    client_ur_ls: vec!["http://a:2".to_string()],
                    is_learner: false,
                },
                Member {
                    id: 0x11,
                    peer_ur_ls: vec!["http://b:1".to_string()],
                    ..Default::default()
                },
            ],
        };
        assert_eq!(
            list_hex_json(&response),
            "{\"header\":{\"cluster_id\":\"ab\",\"member_id\":\"cd\",\"raft_term\":2},\
             \"members\":[{\"ID\":\"10\",\"name\":\"m0\",\"peerURLs\":[\"http://a:1\"],\
             \"clientURLS\":[\"http://a:2\"]},{\"ID\":\"11\",\"name\":\"\",\
             \"peerURLs\":[\"http://b:1\"],\"clientURLS\":null}]}"
        );
    }
}
