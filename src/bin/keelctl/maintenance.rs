//! `alarm list|disarm`, `defrag`, `move-leader` and `version`, with etcdctl's checks,
//! messages, exit codes and output formats.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use keel_proto::etcdserverpb::alarm_request::AlarmAction;
use keel_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, MoveLeaderRequest,
    StatusRequest,
};

use crate::client::Client;
use crate::endpoint::{endpoints, exit_quietly};
use crate::error::{exit, CliError};
use crate::global::Format;
use crate::gofmt::JsonObject;
use crate::member::parse_hex_id;
use crate::print;
use crate::table::go_list;
use crate::Ctx;

/// `alarm <subcommand>`: alarm related commands.
#[derive(Subcommand, Debug)]
pub enum AlarmCommand {
    /// Disarms all alarms.
    Disarm(NoArgs),
    /// Lists all alarms.
    List(NoArgs),
}

/// A subcommand that takes no arguments.
#[derive(Args, Debug)]
pub struct NoArgs {
    /// None are accepted.
    pub args: Vec<String>,
}

/// `defrag [--cluster] [--data-dir]`.
#[derive(Args, Debug)]
pub struct DefragArgs {
    /// Use all endpoints from the cluster member list.
    #[arg(long)]
    pub cluster: bool,
    /// Optional. If present, defragments a data directory not in use by etcd.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `move-leader <transferee-member-id>`.
#[derive(Args, Debug)]
pub struct MoveLeaderArgs {
    /// The member to make leader, in hexadecimal.
    pub args: Vec<String>,
}

/// An alarm type's name, as etcd's enum prints it.
fn alarm_name(alarm: i32) -> String {
    match AlarmType::try_from(alarm) {
        Ok(AlarmType::None) => "NONE".to_string(),
        Ok(AlarmType::Nospace) => "NOSPACE".to_string(),
        Ok(AlarmType::Corrupt) => "CORRUPT".to_string(),
        Err(_) => alarm.to_string(),
    }
}

/// Runs an alarm subcommand.
pub fn alarm(ctx: &Ctx, command: &AlarmCommand) -> Result<(), CliError> {
    let response = match command {
        AlarmCommand::List(args) => {
            if !args.args.is_empty() {
                return Err(CliError::bad_args(
                    "alarm list command accepts no arguments",
                ));
            }
            let client = ctx.client()?;
            client.call(client.maintenance().alarm(AlarmRequest {
                action: AlarmAction::Get as i32,
                member_id: 0,
                alarm: AlarmType::None as i32,
            }))?
        }
        AlarmCommand::Disarm(args) => {
            if !args.args.is_empty() {
                return Err(CliError::bad_args(
                    "alarm disarm command accepts no arguments",
                ));
            }
            disarm_all(ctx.client()?)?
        }
    };
    print_alarms(ctx, &response)
}

/// Disarms every alarm as etcd's client does for an empty member and type: the alarm list,
/// then one deactivation per alarm; the answer is the deactivated alarms, without a header.
fn disarm_all(client: &Client) -> Result<AlarmResponse, CliError> {
    let listed = client.call(client.maintenance().alarm(AlarmRequest {
        action: AlarmAction::Get as i32,
        member_id: 0,
        alarm: AlarmType::None as i32,
    }))?;
    let mut disarmed = AlarmResponse::default();
    for alarm in listed.alarms {
        let response = client.call(client.maintenance().alarm(AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: alarm.member_id,
            alarm: alarm.alarm,
        }))?;
        disarmed.alarms.extend(response.alarms);
    }
    Ok(disarmed)
}

/// An alarm as Go's `%+v` shows it (gogo protobuf's compact text).
fn alarm_text(alarm: &AlarmMember) -> String {
    let mut text = String::new();
    if alarm.member_id != 0 {
        text.push_str(&format!("memberID:{} ", alarm.member_id));
    }
    if alarm.alarm != 0 {
        text.push_str(&format!("alarm:{} ", alarm_name(alarm.alarm)));
    }
    text
}

fn print_alarms(ctx: &Ctx, response: &AlarmResponse) -> Result<(), CliError> {
    match ctx.out.format {
        Format::Simple => {
            for alarm in &response.alarms {
                println!("{}", alarm_text(alarm));
            }
        }
        Format::Json => println!(
            "{}",
            JsonObject::new()
                .raw("header", print::header_json(&response.header))
                .list(
                    "alarms",
                    response
                        .alarms
                        .iter()
                        .map(|a| {
                            JsonObject::new()
                                .u64("memberID", a.member_id)
                                .i64("alarm", i64::from(a.alarm))
                                .finish()
                        })
                        .collect(),
                )
                .finish()
        ),
        Format::Fields => {
            print::fields_header(&response.header);
            for alarm in &response.alarms {
                println!("\"MemberID\" : {}", alarm.member_id);
                println!("\"AlarmType\" : {}", alarm_name(alarm.alarm));
                println!();
            }
        }
        Format::Protobuf => print::protobuf(response),
        Format::Table => return Err(print::unsupported(ctx.out.format)),
    }
    Ok(())
}

/// `defrag --data-dir`, etcdutl's offline defragmentation of a stopped member: an etcd
/// member's backend (`member/snap/db`) is rewritten compactly (refused while the member
/// runs); a Keel data dir needs none (its checkpoints are written whole and the WAL behind
/// them is deleted), which is said and is not an error.
fn defrag_data_dir(dir: &std::path::Path) -> Result<(), CliError> {
    let db = dir.join("member").join("snap").join("db");
    if db.exists() {
        keel::backup::defrag_backend(&db).map_err(|e| {
            CliError::error(format!(
                "Failed to defragment etcd data[{}] ({e})",
                dir.display()
            ))
        })?;
        println!("Finished defragmenting etcd data[{}]", dir.display());
        return Ok(());
    }
    if dir.join("member").join("keel-format").exists() {
        println!(
            "Finished defragmenting etcd data[{}] (a Keel data dir: its checkpoints are written \
             whole and the log behind them deleted, so there is nothing to defragment)",
            dir.display()
        );
        return Ok(());
    }
    Err(CliError::error(format!(
        "Failed to defragment etcd data[{}] (no etcd backend file {} and no Keel data dir)",
        dir.display(),
        db.display()
    )))
}

/// `defrag`: each endpoint (or, with `--cluster`, each member) defragmented in turn; a
/// failure is reported and the next endpoint is tried; exit status 1 if any failed.
pub fn defrag(ctx: &Ctx, args: &DefragArgs) -> Result<(), CliError> {
    if let Some(dir) = &args.data_dir {
        return defrag_data_dir(dir);
    }
    let mut failures = 0;
    for endpoint in endpoints(ctx, args.cluster)? {
        let result = Client::connect_to(&ctx.global, &endpoint)
            .and_then(|client| client.call(client.maintenance().defragment(DefragmentRequest {})));
        match result {
            Ok(_) => println!("Finished defragmenting etcd member[{endpoint}]"),
            Err(e) => {
                eprintln!("Failed to defragment etcd member[{endpoint}] ({e})");
                failures += 1;
            }
        }
    }
    if failures != 0 {
        exit_quietly(exit::ERROR);
    }
    Ok(())
}

/// `move-leader`: finds the leader among `--endpoints` (each asked for its status) and asks
/// it to hand leadership to the given member.
pub fn move_leader(ctx: &Ctx, args: &MoveLeaderArgs) -> Result<(), CliError> {
    if args.args.len() != 1 {
        return Err(CliError::bad_args("move-leader command needs 1 argument"));
    }
    let target = parse_hex_id(&args.args[0]).map_err(CliError::bad_args)?;
    let mut leader = None;
    for endpoint in &ctx.global.endpoints {
        let client = Client::connect_to(&ctx.global, endpoint)?;
        let status = client.call(client.maintenance().status(StatusRequest {}))?;
        let member_id = status.header.unwrap_or_default().member_id;
        if member_id == status.leader {
            leader = Some((client, status.leader));
            break;
        }
    }
    let Some((client, leader_id)) = leader else {
        return Err(CliError::bad_args(format!(
            "no leader endpoint given at {}",
            go_list(&ctx.global.endpoints)
        )));
    };
    let response = client.call(
        client
            .maintenance()
            .move_leader(MoveLeaderRequest { target_id: target }),
    )?;
    match ctx.out.format {
        Format::Simple => {
            println!("Leadership transferred from {leader_id:x} to {target:x}")
        }
        Format::Json => println!(
            "{}",
            JsonObject::new()
                .raw("header", print::header_json(&response.header))
                .finish()
        ),
        Format::Protobuf => print::protobuf(&response),
        Format::Fields | Format::Table => return Err(print::unsupported(ctx.out.format)),
    }
    Ok(())
}

/// `version`: the etcdctl release whose commands, flags and output keelctl reproduces, and
/// the API version, in etcdctl's two lines.
///
/// keelctl prints the etcd version it is a drop-in for (3.5.0, the version Keel's servers
/// report too) rather than its own: scripts read `etcdctl version` to learn which etcdctl
/// features they may use, and keelctl's answers must be true for etcdctl's numbering.
/// keelctl's own version is `keelctl --version`.
pub fn version() -> Result<(), CliError> {
    println!("etcdctl version: {}", keel::server::state::ETCD_API_VERSION);
    let api: Vec<&str> = keel::server::state::ETCD_API_VERSION
        .splitn(3, '.')
        .take(2)
        .collect();
    println!("API version: {}", api.join("."));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_print_as_go_prints_them() {
        let alarm = AlarmMember {
            member_id: 42,
            alarm: AlarmType::Nospace as i32,
        };
        assert_eq!(alarm_text(&alarm), "memberID:42 alarm:NOSPACE ");
    }
}
