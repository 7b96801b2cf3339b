//! etcdctl's usage text: the NAME / USAGE / COMMANDS / DESCRIPTION / OPTIONS / GLOBAL OPTIONS
//! blocks of its help template (etcd's `cobrautl` package), laid out by Go's `text/tabwriter`,
//! with each flag in pflag's terms (its Go type, default and no-value default).
//!
//! The commands and flags come from clap's description of keelctl (the derive structs of each
//! command); what clap does not carry, etcdctl's `Use` line, its short description and its
//! long description, comes from [`COMMANDS`], a table of etcdctl 3.5's commands.

use std::any::TypeId;
use std::time::Duration;

use clap::{Arg, ArgAction, Command};

use crate::global::{go_duration, parse_duration};
use crate::gofmt::quote;

/// The etcdctl release keelctl behaves as (its usage text's VERSION).
pub const ETCDCTL_VERSION: &str = "3.5.0";
/// The API version etcdctl prints with it (major.minor).
pub const API_VERSION: &str = "3.5";
/// The root command's name.
pub const ROOT_NAME: &str = "keelctl";
/// The root command's short description (etcdctl's).
pub const ROOT_SHORT: &str = "A simple command line client for etcd3.";

/// etcdctl 3.5's commands that clap cannot describe: (path, `Use`, short, long description).
/// The path is the command's names below the root, space-separated.
pub const COMMANDS: &[(&str, &str, &str, &str)] = &[
    ("alarm", "alarm <subcommand>", "Alarm related commands", ""),
    ("alarm disarm", "disarm", "Disarms all alarms", ""),
    ("alarm list", "list", "Lists all alarms", ""),
    ("auth", "auth <enable or disable>", "Enable or disable authentication", ""),
    ("auth disable", "disable", "Disables authentication", ""),
    ("auth enable", "enable", "Enables authentication", ""),
    ("auth status", "status", "Returns authentication status", ""),
    ("check", "check <subcommand>", "commands for checking properties of the etcd cluster", ""),
    (
        "check datascale",
        "datascale [options]",
        "Check the memory usage of holding data for different workloads on a given server endpoint.",
        "If no endpoint is provided, localhost will be used. If multiple endpoints are provided, first endpoint will be used.",
    ),
    ("check perf", "perf [options]", "Check the performance of the etcd cluster", ""),
    ("compaction", "compaction [options] <revision>", "Compacts the event history in etcd", ""),
    (
        "completion",
        "completion [bash|zsh|fish|powershell]",
        "Generate completion script",
        "To load completions:\n\nBash:\n\n  $ source <(keelctl completion bash)\n\n  # To load completions for each session, execute once:\n  # Linux:\n  $ keelctl completion bash > /etc/bash_completion.d/keelctl\n  # macOS:\n  $ keelctl completion bash > /usr/local/etc/bash_completion.d/keelctl\n\nZsh:\n\n  # If shell completion is not already enabled in your environment,\n  # you will need to enable it.  You can execute the following once:\n\n  $ echo \"autoload -U compinit; compinit\" >> ~/.zshrc\n\n  # To load completions for each session, execute once:\n  $ keelctl completion zsh > \"${fpath[1]}/_keelctl\"\n\n  # You will need to start a new shell for this setup to take effect.\n\nfish:\n\n  $ keelctl completion fish | source\n\n  # To load completions for each session, execute once:\n  $ keelctl completion fish > ~/.config/fish/completions/keelctl.fish\n\nPowerShell:\n\n  PS> keelctl completion powershell | Out-String | Invoke-Expression\n\n  # To load completions for every new session, run:\n  PS> keelctl completion powershell > keelctl.ps1\n  # and source this file from your PowerShell profile.\n",
    ),
    ("defrag", "defrag", "Defragments the storage of the etcd members with given endpoints", ""),
    ("del", "del [options] <key> [range_end]", "Removes the specified key or range of keys [key, range_end)", ""),
    ("elect", "elect <election-name> [proposal]", "Observes and participates in leader election", ""),
    ("endpoint", "endpoint <subcommand>", "Endpoint related commands", ""),
    ("endpoint hashkv", "hashkv", "Prints the KV history hash for each endpoint in --endpoints", ""),
    ("endpoint health", "health", "Checks the healthiness of endpoints specified in `--endpoints` flag", ""),
    (
        "endpoint status",
        "status",
        "Prints out the status of endpoints specified in `--endpoints` flag",
        "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.\nThe items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.\n",
    ),
    ("get", "get [options] <key> [range_end]", "Gets the key or a range of keys", ""),
    ("help", "help [command]", "Help about any command", "Help provides help for any command in the application.\nSimply type keelctl help [path to command] for full details."),
    ("lease", "lease <subcommand>", "Lease related commands", ""),
    ("lease grant", "grant <ttl>", "Creates leases", ""),
    ("lease keep-alive", "keep-alive [options] <leaseID>", "Keeps leases alive (renew)", ""),
    ("lease list", "list", "List all active leases", ""),
    ("lease revoke", "revoke <leaseID>", "Revokes leases", ""),
    ("lease timetolive", "timetolive <leaseID> [options]", "Get lease information", ""),
    ("lock", "lock <lockname> [exec-command arg1 arg2 ...]", "Acquires a named lock", ""),
    ("make-mirror", "make-mirror [options] <destination>", "Makes a mirror at the destination etcd cluster", ""),
    ("member", "member <subcommand>", "Membership related commands", ""),
    ("member add", "add <memberName> [options]", "Adds a member into the cluster", ""),
    (
        "member list",
        "list",
        "Lists all members in the cluster",
        "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.\nThe items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.\n",
    ),
    (
        "member promote",
        "promote <memberID>",
        "Promotes a non-voting member in the cluster",
        "Promotes a non-voting learner member to a voting one in the cluster.\n",
    ),
    ("member remove", "remove <memberID>", "Removes a member from the cluster", ""),
    ("member update", "update <memberID> [options]", "Updates a member in the cluster", ""),
    ("move-leader", "move-leader <transferee-member-id>", "Transfers leadership to another etcd cluster member.", ""),
    (
        "put",
        "put [options] <key> <value> (<value> can also be given from stdin)",
        "Puts the given key into the store",
        "\nPuts the given key into the store.\n\nWhen <value> begins with '-', <value> is interpreted as a flag.\nInsert '--' for workaround:\n\n$ put <key> -- <value>\n$ put -- <key> <value>\n\nIf <value> isn't given as a command line argument and '--ignore-value' is not specified,\nthis command tries to read the value from standard input.\n\nIf <lease> isn't given as a command line argument and '--ignore-lease' is not specified,\nthis command tries to read the value from standard input.\n\nFor example,\n$ cat file | put <key>\nwill store the content of the file to <key>.\n",
    ),
    ("role", "role <subcommand>", "Role related commands", ""),
    ("role add", "add <role name>", "Adds a new role", ""),
    ("role delete", "delete <role name>", "Deletes a role", ""),
    ("role get", "get <role name>", "Gets detailed information of a role", ""),
    (
        "role grant-permission",
        "grant-permission [options] <role name> <permission type> <key> [endkey]",
        "Grants a key to a role",
        "",
    ),
    ("role list", "list", "Lists all roles", ""),
    ("role revoke-permission", "revoke-permission <role name> <key> [endkey]", "Revokes a key from a role", ""),
    ("snapshot", "snapshot <subcommand>", "Manages etcd node snapshots", ""),
    ("snapshot restore", "restore <filename> [options]", "Restores an etcd member snapshot to an etcd directory", ""),
    ("snapshot save", "save <filename>", "Stores an etcd node backend snapshot to a given file", ""),
    (
        "snapshot status",
        "status <filename>",
        "[deprecated] Gets backend snapshot status of a given file",
        "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.\nThe items in the lists are hash, revision, total keys, total size.\n\nMoved to 'etcdutl snapshot status ...'\n",
    ),
    ("txn", "txn [options]", "Txn processes all the requests in one transaction", ""),
    ("user", "user <subcommand>", "User related commands", ""),
    ("user add", "add <user name or user:password> [options]", "Adds a new user", ""),
    ("user delete", "delete <user name>", "Deletes a user", ""),
    ("user get", "get <user name> [options]", "Gets detailed information of a user", ""),
    ("user grant-role", "grant-role <user name> <role name>", "Grants a role to a user", ""),
    ("user list", "list", "Lists all users", ""),
    ("user passwd", "passwd <user name> [options]", "Changes password of user", ""),
    ("user revoke-role", "revoke-role <user name> <role name>", "Revokes a role from a user", ""),
    ("version", "version", "Prints the version of etcdctl", ""),
    (
        "watch",
        "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
        "Watches events stream on keys or prefixes",
        "",
    ),
];

/// etcdctl's order of its top-level commands (the order cobra offers suggestions in).
pub const TOP_LEVEL_ORDER: &[&str] = &[
    "get",
    "put",
    "del",
    "txn",
    "compaction",
    "alarm",
    "defrag",
    "endpoint",
    "move-leader",
    "watch",
    "version",
    "lease",
    "member",
    "snapshot",
    "make-mirror",
    "lock",
    "elect",
    "auth",
    "user",
    "role",
    "check",
    "completion",
];

/// A flag's Go type, which decides how pflag parses and shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoType {
    /// `bool`: `--flag` alone means true.
    Bool,
    /// Signed integers (`strconv.ParseInt`, base prefixes allowed).
    Int,
    /// Unsigned integers (`strconv.ParseUint`).
    Uint,
    /// `float64`.
    Float,
    /// `time.Duration` (`time.ParseDuration`).
    Duration,
    /// `string`: any text.
    String,
    /// `[]string` from comma-separated values, repeatable.
    StringSlice,
}

/// How a parsed flag is handed on to clap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// A clap switch (`ArgAction::SetTrue`): given alone when true, left out when false.
    Switch,
    /// One value, `--name=value`.
    Value,
    /// Each value, `--name=value` repeated.
    Append,
}

/// One flag as pflag sees it.
#[derive(Clone, Debug)]
pub struct Flag {
    /// clap's id of the argument.
    pub id: String,
    /// The long name, without dashes.
    pub long: String,
    /// The one-letter shorthand.
    pub short: Option<char>,
    /// The Go type.
    pub kind: GoType,
    /// The default as pflag prints it (`DefValue`).
    pub default: String,
    /// The value when the flag is given without one (`NoOptDefVal`).
    pub no_value: Option<String>,
    /// The usage text.
    pub usage: String,
    /// How to pass it to clap.
    pub emit: Emit,
    /// Declared on an ancestor and inherited by this command.
    pub inherited: bool,
    /// A file path (clap refuses an empty one; etcdctl checks it later).
    pub path: bool,
}

impl Flag {
    /// The name pflag's errors use: `--name`, or `-s, --name` when it has a shorthand.
    pub fn error_name(&self) -> String {
        match self.short {
            Some(short) => format!("-{short}, --{}", self.long),
            None => format!("--{}", self.long),
        }
    }

    /// The `ETCDCTL_*` variable that sets the flag.
    pub fn env_name(&self) -> String {
        format!("ETCDCTL_{}", self.long.to_uppercase().replace('-', "_"))
    }

    /// The flag cobra gives every command: `-h, --help`.
    pub fn help(command_name: &str) -> Flag {
        Flag {
            id: "help".to_string(),
            long: "help".to_string(),
            short: Some('h'),
            kind: GoType::Bool,
            default: "false".to_string(),
            no_value: Some("true".to_string()),
            usage: format!("help for {command_name}"),
            emit: Emit::Switch,
            inherited: false,
            path: false,
        }
    }
}

/// The Go type of a clap argument.
fn go_type(arg: &Arg) -> GoType {
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => return GoType::Bool,
        ArgAction::Count => return GoType::Int,
        _ => {}
    }
    let id = arg.get_value_parser().type_id();
    let is = |types: &[TypeId]| types.iter().any(|t| id == *t);
    if is(&[TypeId::of::<bool>()]) {
        GoType::Bool
    } else if is(&[
        TypeId::of::<i64>(),
        TypeId::of::<i32>(),
        TypeId::of::<i16>(),
        TypeId::of::<i8>(),
        TypeId::of::<isize>(),
    ]) {
        GoType::Int
    } else if is(&[
        TypeId::of::<u64>(),
        TypeId::of::<u32>(),
        TypeId::of::<u16>(),
        TypeId::of::<u8>(),
        TypeId::of::<usize>(),
    ]) {
        GoType::Uint
    } else if is(&[TypeId::of::<f64>(), TypeId::of::<f32>()]) {
        GoType::Float
    } else if is(&[TypeId::of::<Duration>()]) {
        GoType::Duration
    } else if matches!(arg.get_action(), ArgAction::Append) {
        GoType::StringSlice
    } else {
        GoType::String
    }
}

/// The argument as a pflag flag, or `None` for positionals and clap's own help and version.
fn flag_of(arg: &Arg, inherited: bool) -> Option<Flag> {
    let long = arg.get_long()?;
    if matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    ) {
        return None;
    }
    let kind = go_type(arg);
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let default = match kind {
        GoType::Bool => defaults
            .first()
            .cloned()
            .unwrap_or_else(|| matches!(arg.get_action(), ArgAction::SetFalse).to_string()),
        GoType::Int | GoType::Uint | GoType::Float => {
            defaults.first().cloned().unwrap_or_else(|| "0".to_string())
        }
        GoType::Duration => defaults
            .first()
            .map(|d| {
                parse_duration(d)
                    .map(go_duration)
                    .unwrap_or_else(|_| d.clone())
            })
            .unwrap_or_else(|| "0s".to_string()),
        GoType::String => defaults.first().cloned().unwrap_or_default(),
        GoType::StringSlice => format!("[{}]", defaults.join(",")),
    };
    let no_value = match kind {
        // Only etcdctl's bools take no value.
        GoType::Bool => Some("true".to_string()),
        _ => None,
    };
    let emit = match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count => Emit::Switch,
        ArgAction::Append => Emit::Append,
        _ => Emit::Value,
    };
    Some(Flag {
        id: arg.get_id().to_string(),
        long: long.to_string(),
        short: arg.get_short(),
        kind,
        default,
        no_value,
        usage: arg.get_help().map(|h| h.to_string()).unwrap_or_default(),
        emit,
        inherited,
        path: arg.get_value_parser().type_id() == TypeId::of::<std::path::PathBuf>(),
    })
}

/// One command of the tree, with the path of commands from the root to it.
#[derive(Clone, Copy)]
pub struct Node<'c, 'a> {
    /// The root first, this command last.
    pub chain: &'c [&'a Command],
}

impl<'a> Node<'_, 'a> {
    /// The command itself.
    pub fn command(&self) -> &'a Command {
        self.chain[self.chain.len() - 1]
    }

    /// Whether this is the root command.
    pub fn is_root(&self) -> bool {
        self.chain.len() == 1
    }

    /// The names below the root, space-separated ("member add"; "" for the root).
    pub fn path(&self) -> String {
        self.chain[1..]
            .iter()
            .map(|c| c.get_name())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command's name ("keelctl" for the root).
    pub fn name(&self) -> &'a str {
        if self.is_root() {
            ROOT_NAME
        } else {
            self.command().get_name()
        }
    }

    /// The full command path from the root ("keelctl member add").
    pub fn command_path(&self) -> String {
        let path = self.path();
        if path.is_empty() {
            ROOT_NAME.to_string()
        } else {
            format!("{ROOT_NAME} {path}")
        }
    }

    /// Every flag the command takes, its own and the inherited ones, and cobra's `--help`.
    pub fn flags(&self) -> Vec<Flag> {
        let command = self.command();
        let parent = (self.chain.len() > 1).then(|| self.chain[self.chain.len() - 2]);
        let mut flags: Vec<Flag> = command
            .get_arguments()
            .filter_map(|arg| {
                let inherited = arg.is_global_set()
                    && parent
                        .is_some_and(|p| p.get_arguments().any(|a| a.get_id() == arg.get_id()));
                flag_of(arg, inherited)
            })
            .collect();
        flags.push(Flag::help(self.name()));
        flags.sort_by(|a, b| a.long.cmp(&b.long));
        flags
    }

    /// Whether the command runs (cobra's `Runnable`): a leaf, or the help command.
    pub fn runnable(&self) -> bool {
        !self.command().has_subcommands()
    }
}

/// The table entry of a command path.
fn table(path: &str) -> Option<&'static (&'static str, &'static str, &'static str, &'static str)> {
    COMMANDS.iter().find(|(p, ..)| *p == path)
}

/// The command's short description: etcdctl's, or the one keelctl's source gives.
pub fn short(node: &Node) -> String {
    if node.is_root() {
        return ROOT_SHORT.to_string();
    }
    match table(&node.path()) {
        Some((_, _, short, _)) => short.to_string(),
        None => node
            .command()
            .get_about()
            .map(|a| a.to_string())
            .unwrap_or_default(),
    }
}

/// cobra's `UseLine`: the parent's path, the command's `Use`, and ` [flags]`.
pub fn use_line(node: &Node) -> String {
    if node.is_root() {
        return format!("{ROOT_NAME} [flags]");
    }
    let path = node.path();
    let (usage, flags) = match table(&path) {
        Some((_, usage, ..)) => (usage.to_string(), path != "completion"),
        None => (node.name().to_string(), true),
    };
    let parent = Node {
        chain: &node.chain[..node.chain.len() - 1],
    };
    let line = format!("{} {usage}", parent.command_path());
    if flags && !line.contains("[flags]") {
        format!("{line} [flags]")
    } else {
        line
    }
}

/// The usage text of the help command (which is not a clap command).
pub fn help_command_usage(root: &Command) -> String {
    let chain = [root];
    let root_node = Node { chain: &chain };
    let mut local = vec![Flag::help("help")];
    local.sort_by(|a, b| a.long.cmp(&b.long));
    let inherited: Vec<Flag> = root_node
        .flags()
        .into_iter()
        .filter(|f| f.long != "help")
        .collect();
    let (_, usage, short, long) = table("help").expect("help is in the table");
    let mut text = format!("NAME:\n\thelp - {short}\n\nUSAGE:\n\t{ROOT_NAME} {usage} [flags]\n");
    description(&mut text, long);
    text.push_str("\nOPTIONS:\n");
    text.push_str(&flag_usages(&local));
    text.push_str("\nGLOBAL OPTIONS:\n");
    text.push_str(&flag_usages(&inherited));
    text.push('\n');
    tabwriter(&text)
}

fn description(text: &mut String, long: &str) {
    if long.is_empty() {
        return;
    }
    text.push_str("\nDESCRIPTION:\n");
    for line in long.trim_matches(['\n', '\t', ' ']).split('\n') {
        text.push('\t');
        text.push_str(line);
        text.push('\n');
    }
}

/// etcdctl's usage text of a command, as it prints it to stdout.
pub fn usage(node: &Node) -> String {
    usage_text(node, true)
}

/// The root's usage as `help <unknown topic>` prints it: cobra has not given the root its
/// `--help` flag then, so the OPTIONS lack it.
pub fn root_usage_without_help(root: &Command) -> String {
    let chain = [root];
    usage_text(&Node { chain: &chain }, false)
}

fn usage_text(node: &Node, with_help: bool) -> String {
    let mut text = String::new();
    let name = if node.is_root() {
        ROOT_NAME.to_string()
    } else {
        node.path()
    };
    text.push_str(&format!(
        "NAME:\n\t{name} - {}\n\nUSAGE:\n\t{}\n",
        short(node),
        use_line(node)
    ));
    if node.is_root() {
        text.push_str(&format!("\nVERSION:\n\t{ETCDCTL_VERSION}\n"));
    }
    let has_subcommands = node.command().has_subcommands() || node.is_root();
    if has_subcommands {
        text.push_str(&format!("\nAPI VERSION:\n\t{API_VERSION}\n"));
        text.push_str("\n\nCOMMANDS:\n");
        let mut lines = Vec::new();
        collect_subcommands(node.command(), &node.path(), &[], &mut lines);
        if node.is_root() {
            lines.push(("help".to_string(), short_of_path("help")));
        }
        lines.sort();
        for (path, short) in lines {
            text.push_str(&format!("\t{path}\t{short}\n"));
        }
    }
    let long = if node.is_root() {
        ""
    } else {
        table(&node.path()).map(|(.., long)| *long).unwrap_or("")
    };
    description(&mut text, long);
    let flags = node
        .flags()
        .into_iter()
        .filter(|f| with_help || f.long != "help");
    let (inherited, local): (Vec<Flag>, Vec<Flag>) = flags.partition(|f| f.inherited);
    text.push_str("\nOPTIONS:\n");
    text.push_str(&flag_usages(&local));
    if !inherited.is_empty() {
        text.push_str("\nGLOBAL OPTIONS:\n");
        text.push_str(&flag_usages(&inherited));
    }
    text.push('\n');
    tabwriter(&text)
}

fn short_of_path(path: &str) -> String {
    table(path)
        .map(|(_, _, s, _)| s.to_string())
        .unwrap_or_default()
}

/// The runnable commands below `command` (cobra's `getSubCommands`, runnable ones only), as
/// (path relative to `command`, short description); `base` is `command`'s own path.
fn collect_subcommands(
    command: &Command,
    base: &str,
    prefix: &[&str],
    out: &mut Vec<(String, String)>,
) {
    for sub in command.get_subcommands() {
        let mut path: Vec<&str> = prefix.to_vec();
        path.push(sub.get_name());
        if sub.has_subcommands() {
            collect_subcommands(sub, base, &path, out);
        } else {
            let relative = path.join(" ");
            let full = if base.is_empty() {
                relative.clone()
            } else {
                format!("{base} {relative}")
            };
            let short = match table(&full) {
                Some((_, _, short, _)) => short.to_string(),
                None => sub.get_about().map(|a| a.to_string()).unwrap_or_default(),
            };
            out.push((relative, short));
        }
    }
}

/// etcd's flag lines (`etcdFlagUsages`): `  -s, --name[=default]\tusage`, string defaults
/// quoted, sorted by name.
pub fn flag_usages(flags: &[Flag]) -> String {
    let mut out = String::new();
    for flag in flags {
        match flag.short {
            Some(short) => out.push_str(&format!("  -{short}, --{}", flag.long)),
            None => out.push_str(&format!("      --{}", flag.long)),
        }
        if flag.no_value.is_some() {
            out.push('[');
        }
        if flag.kind == GoType::String {
            out.push('=');
            out.push_str(&quote(flag.default.as_bytes()));
        } else {
            out.push('=');
            out.push_str(&flag.default);
        }
        if flag.no_value.is_some() {
            out.push(']');
        }
        out.push('\t');
        out.push_str(&flag.usage);
        out.push('\n');
    }
    out
}

/// Go's `text/tabwriter` as etcdctl sets it up (minimum width 0, tab width 8, padding 1,
/// padded with tabs): tab-terminated cells of consecutive lines form columns, each as wide
/// as its widest cell plus one, rounded up to a multiple of 8 and filled with tabs.
pub fn tabwriter(text: &str) -> String {
    struct Writer<'a> {
        lines: Vec<Vec<&'a str>>,
        widths: Vec<usize>,
        out: String,
    }
    impl Writer<'_> {
        fn pad(&mut self, text_width: usize, cell_width: usize) {
            let cell_width = cell_width.div_ceil(8) * 8;
            let padding = cell_width - text_width;
            for _ in 0..padding.div_ceil(8) {
                self.out.push('\t');
            }
        }

        fn write_lines(&mut self, from: usize, to: usize) {
            for i in from..to {
                let cells = self.lines[i].clone();
                for (j, cell) in cells.iter().enumerate() {
                    self.out.push_str(cell);
                    if j < self.widths.len() {
                        self.pad(cell.chars().count(), self.widths[j]);
                    }
                }
                if i + 1 < self.lines.len() {
                    self.out.push('\n');
                }
            }
        }

        fn format(&mut self, from: usize, to: usize) {
            let column = self.widths.len();
            let mut start = from;
            let mut this = from;
            while this < to {
                if column + 1 >= self.lines[this].len() {
                    this += 1;
                    continue;
                }
                self.write_lines(start, this);
                start = this;
                let mut width = 0;
                while this < to {
                    let line = &self.lines[this];
                    if column + 1 >= line.len() {
                        break;
                    }
                    width = width.max(line[column].chars().count() + 1);
                    this += 1;
                }
                self.widths.push(width);
                self.format(start, this);
                self.widths.pop();
                start = this;
                // The line that ended the block has no cell in this column.
                this += 1;
            }
            self.write_lines(start, to);
        }
    }
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let count = lines.len();
    let mut writer = Writer {
        lines,
        widths: Vec::new(),
        out: String::with_capacity(text.len() * 2),
    };
    writer.format(0, count);
    writer.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_aligns_columns_with_tabs_as_go_does() {
        let text = "OPTIONS:\n      --consistency=\"l\"\tLinearizable\n  -h, --help[=false]\thelp for get\n      --print-value-only[=false]\tOnly\n\nX\n";
        assert_eq!(
            tabwriter(text),
            "OPTIONS:\n      --consistency=\"l\"\t\t\tLinearizable\n  -h, --help[=false]\t\t\thelp for get\n      --print-value-only[=false]\tOnly\n\nX\n"
        );
        // Separate blocks are aligned separately; a leading empty cell is one tab.
        assert_eq!(
            tabwriter("\tget - x\n\n\tab\tc\n\tabcdefghi\td\n"),
            "\tget - x\n\n\tab\t\tc\n\tabcdefghi\td\n"
        );
    }
}
