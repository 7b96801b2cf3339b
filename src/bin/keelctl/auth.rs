//! `user`, `role` and `auth`: etcd's users, roles, permissions and the auth switch, with
//! etcdctl's arguments, password prompts, messages and output formats.
//!
//! As etcdctl does, every command makes its call first and prints afterwards, so a format a
//! command cannot print (`-w table`, or `-w fields` for `user get`/`user list`/`auth status`)
//! fails only after the server has done the work.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};
use keel_proto::authpb::permission::Type as PermissionType;
use keel_proto::authpb::{Permission, UserAddOptions};
use keel_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleListRequest,
    AuthRoleRevokePermissionRequest, AuthStatusRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGetRequest,
    AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest, ResponseHeader,
};
use prost::Message;

use crate::error::CliError;
use crate::global::{parse_bool, Format};
use crate::gofmt::{println_bytes, quote, JsonObject};
use crate::kv::prefix_end;
use crate::print::{self, Out};
use crate::Ctx;

/// etcd's error text for enabling auth before the root role exists; `auth enable` then
/// creates the role, grants it to root and tries again.
const ROOT_ROLE_MISSING: &str = "etcdserver: root user does not have root role";

/// `user <subcommand>`.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Adds a new user.
    Add(UserAddArgs),
    /// Deletes a user.
    Delete(NamesArgs),
    /// Gets detailed information of a user.
    Get(UserGetArgs),
    /// Lists all users.
    List(NamesArgs),
    /// Changes password of user.
    Passwd(PasswdArgs),
    /// Grants a role to a user.
    GrantRole(NamesArgs),
    /// Revokes a role from a user.
    RevokeRole(NamesArgs),
}

/// `role <subcommand>`.
#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Adds a new role.
    Add(NamesArgs),
    /// Deletes a role.
    Delete(NamesArgs),
    /// Gets detailed information of a role.
    Get(NamesArgs),
    /// Lists all roles.
    List(NamesArgs),
    /// Grants a key to a role.
    GrantPermission(PermissionArgs),
    /// Revokes a key from a role.
    RevokePermission(PermissionArgs),
}

/// `auth <enable or disable>`.
#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Enables authentication.
    Enable(NamesArgs),
    /// Disables authentication.
    Disable(NamesArgs),
    /// Returns authentication status.
    Status(NamesArgs),
}

/// The positional arguments of a command without flags of its own (counted by the command,
/// as etcdctl counts them, so a wrong count gets etcdctl's message).
#[derive(Args, Debug)]
pub struct NamesArgs {
    /// User and role names.
    pub args: Vec<String>,
}

/// `user add <user name or user:password> [options]`.
#[derive(Args, Debug)]
pub struct UserAddArgs {
    /// The user name, optionally with `:password`.
    pub args: Vec<String>,
    /// Read password from stdin instead of interactive terminal.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          require_equals = true, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub interactive: bool,
    /// Supply password from the command line flag.
    #[arg(long, default_value = "")]
    pub new_user_password: String,
    /// Create a user without password (CN based auth only).
    #[arg(long)]
    pub no_password: bool,
}

/// `user get <user name> [options]`.
#[derive(Args, Debug)]
pub struct UserGetArgs {
    /// The user name.
    pub args: Vec<String>,
    /// Show permissions of roles granted to the user.
    #[arg(long)]
    pub detail: bool,
}

/// `user passwd <user name> [options]`.
#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// The user name.
    pub args: Vec<String>,
    /// If true, read password from stdin instead of interactive terminal.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          require_equals = true, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub interactive: bool,
}

/// `role grant-permission [options] <role name> <permission type> <key> [endkey]` and
/// `role revoke-permission <role name> <key> [endkey]`.
#[derive(Args, Debug)]
pub struct PermissionArgs {
    /// The role, (for grants) the permission type, the key and the optional range end.
    pub args: Vec<String>,
    /// A prefix permission.
    #[arg(long)]
    pub prefix: bool,
    /// A permission of keys that are greater than or equal to the given key using byte
    /// compare.
    #[arg(long)]
    pub from_key: bool,
}

/// Runs a `user` command.
pub fn user(ctx: &Ctx, command: &UserCommand) -> Result<(), CliError> {
    match command {
        UserCommand::Add(args) => user_add(ctx, args),
        UserCommand::Delete(args) => {
            let name = one_name(
                args,
                "user delete command requires user name as its argument",
            )?;
            let client = ctx.client()?;
            let response = client.call(
                client
                    .auth()
                    .user_delete(AuthUserDeleteRequest { name: name.clone() }),
            )?;
            print_done(ctx.out, &response, &response.header, || {
                println!("User {name} deleted")
            })
        }
        UserCommand::Get(args) => user_get(ctx, args),
        UserCommand::List(args) => {
            if !args.args.is_empty() {
                return Err(CliError::bad_args(
                    "user list command requires no arguments",
                ));
            }
            let client = ctx.client()?;
            let response = client.call(client.auth().user_list(AuthUserListRequest {}))?;
            match ctx.out.format {
                Format::Simple => {
                    for user in &response.users {
                        println!("{user}");
                    }
                    Ok(())
                }
                Format::Json => {
                    println!("{}", names_json(&response.header, "users", &response.users));
                    Ok(())
                }
                Format::Protobuf => {
                    print::protobuf(&response);
                    Ok(())
                }
                Format::Fields | Format::Table => Err(print::unsupported(ctx.out.format)),
            }
        }
        UserCommand::Passwd(args) => {
            let name = one_name(
                &NamesArgs {
                    args: args.args.clone(),
                },
                "user passwd command requires user name as its argument",
            )?;
            let password = if args.interactive {
                ask_new_password(&name)?
            } else {
                scan_word()
            };
            let client = ctx.client()?;
            let response = client.call(client.auth().user_change_password(
                AuthUserChangePasswordRequest {
                    name,
                    password,
                    ..Default::default()
                },
            ))?;
            print_done(ctx.out, &response, &response.header, || {
                println!("Password updated")
            })
        }
        UserCommand::GrantRole(args) => {
            let [user, role] = two_names(
                args,
                "user grant command requires user name and role name as its argument",
            )?;
            let client = ctx.client()?;
            let response =
                client.call(client.auth().user_grant_role(AuthUserGrantRoleRequest {
                    user: user.clone(),
                    role: role.clone(),
                }))?;
            print_done(ctx.out, &response, &response.header, || {
                println!("Role {role} is granted to user {user}")
            })
        }
        UserCommand::RevokeRole(args) => {
            let [name, role] = two_names(
                args,
                "user revoke-role requires user name and role name as its argument",
            )?;
            let client = ctx.client()?;
            let response =
                client.call(client.auth().user_revoke_role(AuthUserRevokeRoleRequest {
                    name: name.clone(),
                    role: role.clone(),
                }))?;
            print_done(ctx.out, &response, &response.header, || {
                println!("Role {role} is revoked from user {name}")
            })
        }
    }
}

fn user_add(ctx: &Ctx, args: &UserAddArgs) -> Result<(), CliError> {
    if args.args.len() != 1 {
        return Err(CliError::bad_args(
            "user add command requires user name as its argument",
        ));
    }
    let arg = &args.args[0];
    let (name, password) = if args.no_password {
        (arg.clone(), String::new())
    } else if !args.new_user_password.is_empty() {
        (arg.clone(), args.new_user_password.clone())
    } else {
        match arg.split_once(':') {
            Some((name, password)) => {
                if name.is_empty() {
                    return Err(CliError::bad_args("empty user name is not allowed"));
                }
                (name.to_string(), password.to_string())
            }
            None if args.interactive => (arg.clone(), ask_new_password(arg)?),
            None => (arg.clone(), scan_word()),
        }
    };
    let client = ctx.client()?;
    let response = client.call(client.auth().user_add(AuthUserAddRequest {
        name: name.clone(),
        password,
        options: Some(UserAddOptions {
            no_password: args.no_password,
        }),
        ..Default::default()
    }))?;
    print_done(ctx.out, &response, &response.header, || {
        println!("User {name} created")
    })
}

fn user_get(ctx: &Ctx, args: &UserGetArgs) -> Result<(), CliError> {
    let name = one_name(
        &NamesArgs {
            args: args.args.clone(),
        },
        "user get command requires user name as its argument",
    )?;
    let client = ctx.client()?;
    let response = client.call(
        client
            .auth()
            .user_get(AuthUserGetRequest { name: name.clone() }),
    )?;
    if args.detail {
        // The roles in the command's format, each after a blank line, under a plain title
        // line whatever the format (as etcdctl prints it).
        println!("User: {name}");
        for role in &response.roles {
            println!();
            let role_response = client.call(
                client
                    .auth()
                    .role_get(AuthRoleGetRequest { role: role.clone() }),
            )?;
            print_role(ctx.out, role, &role_response)?;
        }
        return Ok(());
    }
    match ctx.out.format {
        Format::Simple => {
            println!("User: {name}");
            let mut line = String::from("Roles:");
            for role in &response.roles {
                line.push(' ');
                line.push_str(role);
            }
            println!("{line}");
            Ok(())
        }
        Format::Json => {
            println!("{}", names_json(&response.header, "roles", &response.roles));
            Ok(())
        }
        Format::Protobuf => {
            print::protobuf(&response);
            Ok(())
        }
        Format::Fields | Format::Table => Err(print::unsupported(ctx.out.format)),
    }
}

/// Runs a `role` command.
pub fn role(ctx: &Ctx, command: &RoleCommand) -> Result<(), CliError> {
    match command {
        RoleCommand::Add(args) => {
            let name = one_name(args, "role add command requires role name as its argument")?;
            let client = ctx.client()?;
            let response = client.call(
                client
                    .auth()
                    .role_add(AuthRoleAddRequest { name: name.clone() }),
            )?;
            print_done(ctx.out, &response, &response.header, || {
                println!("Role {name} created")
            })
        }
        RoleCommand::Delete(args) => {
            let name = one_name(
                args,
                "role delete command requires role name as its argument",
            )?;
            let client = ctx.client()?;
            let response = client.call(
                client
                    .auth()
                    .role_delete(AuthRoleDeleteRequest { role: name.clone() }),
            )?;
            print_done(ctx.out, &response, &response.header, || {
                println!("Role {name} deleted")
            })
        }
        RoleCommand::Get(args) => {
            let name = one_name(args, "role get command requires role name as its argument")?;
            let client = ctx.client()?;
            let response = client.call(
                client
                    .auth()
                    .role_get(AuthRoleGetRequest { role: name.clone() }),
            )?;
            print_role(ctx.out, &name, &response)
        }
        RoleCommand::List(args) => {
            if !args.args.is_empty() {
                return Err(CliError::bad_args(
                    "role list command requires no arguments",
                ));
            }
            let client = ctx.client()?;
            let response = client.call(client.auth().role_list(AuthRoleListRequest {}))?;
            match ctx.out.format {
                Format::Simple => {
                    for role in &response.roles {
                        println!("{role}");
                    }
                }
                Format::Json => {
                    println!("{}", names_json(&response.header, "roles", &response.roles))
                }
                Format::Protobuf => print::protobuf(&response),
                Format::Fields => {
                    fields_header(&response.header);
                    let mut line = String::from("\"Roles\" :");
                    for role in &response.roles {
                        line.push(' ');
                        line.push_str(&quote(role.as_bytes()));
                    }
                    println!("{line}");
                }
                Format::Table => return Err(print::unsupported(ctx.out.format)),
            }
            Ok(())
        }
        RoleCommand::GrantPermission(args) => {
            if args.args.len() < 3 {
                return Err(CliError::bad_args(
                    "role grant command requires role name, permission type, and key [endkey] \
                     as its argument",
                ));
            }
            let perm_type = permission_type(&args.args[1])?;
            let (key, range_end) = permission_range(&args.args[2..], args.prefix, args.from_key)?;
            let name = args.args[0].clone();
            let client = ctx.client()?;
            let response = client.call(client.auth().role_grant_permission(
                AuthRoleGrantPermissionRequest {
                    name: name.clone(),
                    perm: Some(Permission {
                        perm_type: perm_type as i32,
                        key,
                        range_end,
                    }),
                },
            ))?;
            print_done(ctx.out, &response, &response.header, || {
                println!("Role {name} updated")
            })
        }
        RoleCommand::RevokePermission(args) => {
            if args.args.len() < 2 {
                return Err(CliError::bad_args(
                    "role revoke-permission command requires role name and key [endkey] as its \
                     argument",
                ));
            }
            let (key, range_end) = permission_range(&args.args[1..], args.prefix, args.from_key)?;
            let role = args.args[0].clone();
            let client = ctx.client()?;
            let response = client.call(client.auth().role_revoke_permission(
                AuthRoleRevokePermissionRequest {
                    role: role.clone(),
                    key,
                    range_end: range_end.clone(),
                },
            ))?;
            // etcdctl names the key as given on the command line (not the "\0" sent for an
            // empty one) and the range end as sent.
            let given = args.args[1].as_bytes();
            print_done(ctx.out, &response, &response.header, || {
                let mut line = Vec::new();
                if range_end.is_empty() {
                    line.extend_from_slice(b"Permission of key ");
                    line.extend_from_slice(given);
                } else if range_end != b"\0" {
                    line.extend_from_slice(b"Permission of range [");
                    line.extend_from_slice(given);
                    line.extend_from_slice(b", ");
                    line.extend_from_slice(&range_end);
                    line.extend_from_slice(b")");
                } else {
                    line.extend_from_slice(b"Permission of range [");
                    line.extend_from_slice(given);
                    line.extend_from_slice(b", <open ended>");
                }
                line.extend_from_slice(format!(" is revoked from role {role}").as_bytes());
                println_bytes(&line);
            })
        }
    }
}

/// Runs an `auth` command.
pub fn auth(ctx: &Ctx, command: &AuthCommand) -> Result<(), CliError> {
    match command {
        AuthCommand::Enable(args) => {
            if !args.args.is_empty() {
                return Err(CliError::bad_args(
                    "auth enable command does not accept any arguments",
                ));
            }
            let client = ctx.client()?;
            // As etcdctl: when the root user lacks the root role, create the role (if it is
            // missing), grant it and try again; any other failure ends the command.
            loop {
                match client.call(client.auth().auth_enable(AuthEnableRequest {})) {
                    Ok(_) => break,
                    Err(e) if e.message == ROOT_ROLE_MISSING => {
                        client.call(client.auth().role_add(AuthRoleAddRequest {
                            name: "root".to_string(),
                        }))?;
                        client.call(client.auth().user_grant_role(AuthUserGrantRoleRequest {
                            user: "root".to_string(),
                            role: "root".to_string(),
                        }))?;
                    }
                    Err(e) => return Err(e),
                }
            }
            println!("Authentication Enabled");
            Ok(())
        }
        AuthCommand::Disable(args) => {
            if !args.args.is_empty() {
                return Err(CliError::bad_args(
                    "auth disable command does not accept any arguments",
                ));
            }
            let client = ctx.client()?;
            client.call(client.auth().auth_disable(AuthDisableRequest {}))?;
            println!("Authentication Disabled");
            Ok(())
        }
        AuthCommand::Status(args) => {
            if !args.args.is_empty() {
                return Err(CliError::bad_args(
                    "auth status command does not accept any arguments",
                ));
            }
            let client = ctx.client()?;
            let response = client.call(client.auth().auth_status(AuthStatusRequest {}))?;
            match ctx.out.format {
                Format::Simple => {
                    println!("Authentication Status: {}", response.enabled);
                    println!("AuthRevision: {}", response.auth_revision);
                }
                Format::Json => println!(
                    "{}",
                    JsonObject::new()
                        .raw("header", print::header_json(&response.header))
                        .bool("enabled", response.enabled)
                        .u64("authRevision", response.auth_revision)
                        .finish()
                ),
                Format::Protobuf => print::protobuf(&response),
                Format::Fields | Format::Table => return Err(print::unsupported(ctx.out.format)),
            }
            Ok(())
        }
    }
}

/// The one name a command takes, or etcdctl's error `message`.
fn one_name(args: &NamesArgs, message: &str) -> Result<String, CliError> {
    match args.args.as_slice() {
        [name] => Ok(name.clone()),
        _ => Err(CliError::bad_args(message)),
    }
}

/// The two names a command takes, or etcdctl's error `message`.
fn two_names(args: &NamesArgs, message: &str) -> Result<[String; 2], CliError> {
    match args.args.as_slice() {
        [a, b] => Ok([a.clone(), b.clone()]),
        _ => Err(CliError::bad_args(message)),
    }
}

/// A response that only says "done": `simple` prints etcdctl's sentence, `fields` the
/// header, `json` and `protobuf` the response.
fn print_done<M: Message>(
    out: Out,
    response: &M,
    header: &Option<ResponseHeader>,
    simple: impl FnOnce(),
) -> Result<(), CliError> {
    match out.format {
        Format::Simple => simple(),
        Format::Json => println!(
            "{}",
            JsonObject::new()
                .raw("header", print::header_json(header))
                .finish()
        ),
        Format::Protobuf => print::protobuf(response),
        Format::Fields => fields_header(header),
        Format::Table => return Err(print::unsupported(out.format)),
    }
    Ok(())
}

/// The header lines etcdctl's `-w fields` prints for the auth responses: every field, in
/// decimal, the revision even when zero.
fn fields_header(header: &Option<ResponseHeader>) {
    let h = header.unwrap_or_default();
    println!("\"ClusterID\" : {}", h.cluster_id);
    println!("\"MemberID\" : {}", h.member_id);
    println!("\"Revision\" : {}", h.revision);
    println!("\"RaftTerm\" : {}", h.raft_term);
}

/// A response of a header and a list of names as Go's JSON.
fn names_json(header: &Option<ResponseHeader>, field: &str, names: &[String]) -> String {
    JsonObject::new()
        .raw("header", print::header_json(header))
        .list(
            field,
            names.iter().map(|n| crate::gofmt::json_string(n)).collect(),
        )
        .finish()
}

/// A role's permissions in the output format (`role get`, `user get --detail`).
fn print_role(out: Out, name: &str, response: &AuthRoleGetResponse) -> Result<(), CliError> {
    match out.format {
        Format::Simple => print_role_simple(name, &response.perm),
        Format::Json => println!(
            "{}",
            JsonObject::new()
                .raw("header", print::header_json(&response.header))
                .list(
                    "perm",
                    response
                        .perm
                        .iter()
                        .map(|p| {
                            JsonObject::new()
                                .i64("permType", i64::from(p.perm_type))
                                .bytes("key", &p.key)
                                .bytes("range_end", &p.range_end)
                                .finish()
                        })
                        .collect()
                )
                .finish()
        ),
        Format::Protobuf => print::protobuf(response),
        Format::Fields => {
            fields_header(&response.header);
            for p in &response.perm {
                println!("\"PermType\" :  {}", permission_type_name(p.perm_type));
                println!("\"Key\" : {}", quote(&p.key));
                println!("\"RangeEnd\" : {}", quote(&p.range_end));
            }
        }
        Format::Table => return Err(print::unsupported(out.format)),
    }
    Ok(())
}

/// `role get` in simple output: the read permissions, then the write permissions, each a
/// key, `[key, end)` (with `(prefix key)` when the range is a prefix) or `[key, <open
/// ended>`, bytes as they are.
fn print_role_simple(name: &str, perms: &[Permission]) {
    println!("Role {name}");
    let line = |p: &Permission| {
        let mut line = b"\t".to_vec();
        if p.range_end.is_empty() {
            line.extend_from_slice(&p.key);
        } else {
            line.push(b'[');
            line.extend_from_slice(&p.key);
            if p.range_end != b"\0" {
                line.extend_from_slice(b", ");
                line.extend_from_slice(&p.range_end);
                line.push(b')');
            } else {
                line.extend_from_slice(b", <open ended>");
            }
            if prefix_end(&p.key) == p.range_end {
                line.extend_from_slice(b" (prefix ");
                line.extend_from_slice(&p.key);
                line.push(b')');
            }
        }
        println_bytes(&line);
    };
    let read = PermissionType::Read as i32;
    let write = PermissionType::Write as i32;
    let both = PermissionType::Readwrite as i32;
    println!("KV Read:");
    for p in perms {
        if p.perm_type == read || p.perm_type == both {
            line(p);
        }
    }
    println!("KV Write:");
    for p in perms {
        if p.perm_type == write || p.perm_type == both {
            line(p);
        }
    }
}

/// The Go name of a permission type (`Permission_Type.String()`): a number etcd does not
/// define shows as the number.
fn permission_type_name(value: i32) -> String {
    match PermissionType::try_from(value) {
        Ok(PermissionType::Read) => "READ".to_string(),
        Ok(PermissionType::Write) => "WRITE".to_string(),
        Ok(PermissionType::Readwrite) => "READWRITE".to_string(),
        Err(_) => value.to_string(),
    }
}

/// etcd's `StrToPermissionType`: read, write or readwrite, in any case.
fn permission_type(text: &str) -> Result<PermissionType, CliError> {
    match text.to_uppercase().as_str() {
        "READ" => Ok(PermissionType::Read),
        "WRITE" => Ok(PermissionType::Write),
        "READWRITE" => Ok(PermissionType::Readwrite),
        _ => Err(CliError::bad_args(format!(
            "invalid permission type: {text}"
        ))),
    }
}

/// The key and range end of a permission's arguments (`<key> [endkey]`) with `--prefix` or
/// `--from-key`, as etcdctl computes them: an empty key is "\0" (every key with either flag).
pub fn permission_range(
    args: &[String],
    prefix: bool,
    from_key: bool,
) -> Result<(Vec<u8>, Vec<u8>), CliError> {
    const EXCLUSIVE: &str = "--from-key and --prefix flags are mutually exclusive";
    let key = args[0].as_bytes();
    if key.is_empty() {
        if prefix && from_key {
            return Err(CliError::bad_args(EXCLUSIVE));
        }
        // An end key after an empty key is ignored, as etcdctl ignores it.
        let end = if prefix || from_key { vec![0] } else { vec![] };
        return Ok((vec![0], end));
    }
    let end = match args.get(1) {
        None if prefix && from_key => return Err(CliError::bad_args(EXCLUSIVE)),
        None if prefix => prefix_end(key),
        None if from_key => vec![0],
        None => vec![],
        Some(_) if prefix => {
            return Err(CliError::bad_args(
                "unexpected endkey argument with --prefix flag",
            ))
        }
        Some(_) if from_key => {
            return Err(CliError::bad_args(
                "unexpected endkey argument with --from-key flag",
            ))
        }
        Some(end) => end.as_bytes().to_vec(),
    };
    Ok((key.to_vec(), end))
}

/// Asks for a new user's password twice, as etcdctl does: each prompt on stdout, the
/// answer read from stdin without echo when stdin is a terminal, then a newline. An empty
/// answer or two different answers are refused.
fn ask_new_password(name: &str) -> Result<String, CliError> {
    let first = ask(&format!("Password of {name}: "))?;
    if first.is_empty() {
        return Err(CliError::bad_args("empty password"));
    }
    let second = ask(&format!("Type password of {name} again for confirmation: "))?;
    if first != second {
        return Err(CliError::bad_args("given passwords are different"));
    }
    Ok(first)
}

/// Prints `prompt` on stdout and reads one line from stdin, with the terminal's echo off
/// while reading when stdin is a terminal.
fn ask(prompt: &str) -> Result<String, CliError> {
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    let echo = EchoOff::new();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(echo);
    println!();
    read.map_err(|e| CliError::bad_args(format!("failed to ask password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// With `--interactive=false`: the first word of stdin (Go's `fmt.Scanf("%s")`), empty when
/// there is none.
fn scan_word() -> String {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if line.starts_with(['\n', '\r']) {
        return String::new();
    }
    line.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Turns the terminal's echo off on stdin for its lifetime (nothing when stdin is not a
/// terminal).
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        if !std::io::stdin().is_terminal() {
            return EchoOff(None);
        }
        // SAFETY: tcgetattr writes a termios for fd 0 into memory we own; the zeroed value is
        // a valid termios (plain integers and arrays).
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return EchoOff(None);
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: sets fd 0's attributes from a termios we initialized.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) } != 0 {
            return EchoOff(None);
        }
        EchoOff(Some(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores fd 0's attributes to what tcgetattr returned.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, saved);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn permission_ranges_as_etcdctl_computes_them() {
        let range = |args: &[&str], prefix, from_key| {
            permission_range(&strings(args), prefix, from_key).map_err(|e| e.message)
        };
        assert_eq!(range(&["k"], false, false), Ok((b"k".to_vec(), vec![])));
        assert_eq!(
            range(&["a", "z"], false, false),
            Ok((b"a".to_vec(), b"z".to_vec()))
        );
        assert_eq!(
            range(&["p"], true, false),
            Ok((b"p".to_vec(), b"q".to_vec()))
        );
        assert_eq!(range(&["f"], false, true), Ok((b"f".to_vec(), vec![0])));
        assert_eq!(range(&[""], true, false), Ok((vec![0], vec![0])));
        assert_eq!(range(&[""], false, false), Ok((vec![0], vec![])));
        assert!(range(&["a"], true, true).is_err());
        assert!(range(&["a", "b"], true, false).is_err());
        assert!(range(&["a", "b"], false, true).is_err());
    }

    #[test]
    fn permission_types_in_any_case() {
        assert_eq!(
            permission_type("readWrite").ok(),
            Some(PermissionType::Readwrite)
        );
        assert_eq!(
            permission_type("rw")
                .map_err(|e| e.message)
                .err()
                .as_deref(),
            Some("invalid permission type: rw")
        );
    }
}
