//! The command line as etcdctl 3.5 reads it: cobra 1.1's command lookup (prefix matching,
//! "Did you mean this?" suggestions, the `help` command) and pflag's flag parsing (Go types,
//! `--flag=value`, `--flag value`, `-w json`, `-wjson`, bools that take `=false`, `--` ending
//! the flags), with their exact error texts and exit codes, then the `ETCDCTL_*` variables as
//! etcd's `flags.SetPflagsFromEnv` applies them.
//!
//! clap still describes every command (the derive structs of each module) and builds the
//! typed values: this module checks and normalizes the command line first, and hands clap a
//! canonical one (full command names, `--name=value` flags, positionals after `--`) that it
//! accepts.
//!
//! Errors go where etcdctl sends them: cobra prints `Error: <message>` to stderr, the usage
//! to stdout (etcd's usage function writes there directly) and an empty line to stderr, then
//! etcdctl repeats `Error: <message>` and exits 1.

use std::collections::BTreeSet;
use std::io::Write;

use clap::Command;

use crate::error::exit;
use crate::global::{go_duration, parse_bool, parse_duration, Format, Global};
use crate::gofmt::{json_string, quote};
use crate::usage::{self, Emit, Flag, GoType, Node, ROOT_NAME, TOP_LEVEL_ORDER};

/// What the command line asks for.
pub enum Outcome {
    /// Run a command: the command line for clap, and what clap cannot carry.
    Run {
        /// The canonical command line.
        argv: Vec<String>,
        /// Facts for [`Global`] that are not flags.
        extras: Extras,
    },
    /// Everything is printed already (usage, help, an error): exit with this code.
    Exit(u8),
}

/// What the parse learned that clap's derive structs do not hold.
#[derive(Default)]
pub struct Extras {
    given: Vec<String>,
    debug_lines: Vec<String>,
    unsupported_write_out: Option<String>,
}

impl Extras {
    /// Stores the facts in the parsed global flags.
    pub fn apply(self, global: &mut Global) {
        global.given = self.given;
        global.debug_lines = self.debug_lines;
        global.unsupported_write_out = self.unsupported_write_out;
    }
}

/// Commands that never make a client, so never read `ETCDCTL_*` (etcdctl reads them while
/// making its client).
const OFFLINE: &[&str] = &[
    "snapshot restore",
    "snapshot status",
    "version",
    "completion",
];

/// The shells `completion` writes scripts for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish", "powershell"];

/// Finds the command `args` name, as cobra's `Find` does: each word that is not a flag (of the
/// commands found so far) names a subcommand, until one does not. Returns the commands from
/// `root` down, the arguments without the subcommands' names, and whether a `help` word
/// stopped the walk (`keelctl help ...`, `keelctl lease help`).
fn walk<'a>(root: &'a Command, args: &[String]) -> (Vec<&'a Command>, Vec<String>, bool) {
    let mut chain: Vec<&Command> = vec![root];
    let mut rest: Vec<String> = args.to_vec();
    loop {
        let node = Node { chain: &chain };
        let words = strip_flags(&rest, &node.flags());
        let Some(next) = words.first() else { break };
        match find_next(node.command(), next, chain.len() == 1) {
            Some(Next::Command(sub)) => {
                rest = args_minus_first(&rest, next);
                chain.push(sub);
            }
            Some(Next::Help) => {
                rest = args_minus_first(&rest, next);
                return (chain, rest, true);
            }
            None => break,
        }
    }
    (chain, rest, false)
}

/// Reads the command line `args` (without the program name) against `root` (a built clap
/// command) and the environment `env` (without `ETCDCTL_API`).
pub fn parse(root: &Command, args: &[String], env: &[(String, String)]) -> Outcome {
    let (chain, rest, help_command) = walk(root, args);
    let node = Node { chain: &chain };
    if help_command {
        return help(root, &rest);
    }
    if node.is_root() {
        if let Some(word) = strip_flags(&rest, &node.flags()).first() {
            let message = format!(
                "unknown command {} for {}{}",
                quote(word.as_bytes()),
                quote(ROOT_NAME.as_bytes()),
                suggestions(root, word)
            );
            eprintln!("Error: {message}");
            eprintln!("Run '{ROOT_NAME} --help' for usage.");
            eprintln!("Error: {message}");
            return Outcome::Exit(exit::ERROR);
        }
    }
    let flags = node.flags();
    let parsed = match parse_flags(&flags, &rest) {
        Ok(parsed) => parsed,
        Err(message) => return usage_error(&usage::usage(&node), &message),
    };
    if parsed.value_of("help") == Some("true") || !node.runnable() {
        print_stdout(&usage::usage(&node));
        return Outcome::Exit(0);
    }
    let path = node.path();
    if path == "completion" {
        let message = if parsed.positionals.len() != 1 {
            Some(format!(
                "accepts 1 arg(s), received {}",
                parsed.positionals.len()
            ))
        } else if !SHELLS.contains(&parsed.positionals[0].as_str()) {
            Some(format!(
                "invalid argument {} for {}",
                quote(parsed.positionals[0].as_bytes()),
                quote(node.command_path().as_bytes())
            ))
        } else {
            None
        };
        if let Some(message) = message {
            return usage_error(&usage::usage(&node), &message);
        }
    }
    let mut parsed = parsed;
    let mut inherited: Vec<Flag> = flags.iter().filter(|f| f.inherited).cloned().collect();
    if path.starts_with("watch") {
        // etcdctl's watch reads these itself; declaring them keeps them from being warned
        // about as unknown.
        for name in ["watch-key", "watch-range-end"] {
            inherited.push(Flag {
                id: String::new(),
                long: name.to_string(),
                short: None,
                kind: GoType::String,
                default: String::new(),
                no_value: None,
                usage: String::new(),
                emit: Emit::Value,
                inherited: true,
                path: false,
            });
        }
        inherited.sort_by(|a, b| a.long.cmp(&b.long));
    }
    let mut extras = Extras {
        given: inherited
            .iter()
            .filter(|f| parsed.changed.contains(&f.long))
            .map(|f| f.long.clone())
            .collect(),
        ..Extras::default()
    };
    if !OFFLINE.contains(&path.as_str()) {
        if let Err(code) = apply_env(&mut parsed, &inherited, env) {
            return Outcome::Exit(code);
        }
        if parsed.value_of("debug") == Some("true") {
            extras.debug_lines = inherited
                .iter()
                .map(|f| format!("{}={}", f.env_name(), parsed.display(f)))
                .collect();
        }
    }
    if let Some(format) = parsed.value_of("write-out") {
        if !Format::NAMES.contains(&format) {
            extras.unsupported_write_out = Some(format.to_string());
            parsed.values.retain(|(name, _)| name != "write-out");
        }
    }
    let mut argv = vec![ROOT_NAME.to_string()];
    argv.extend(chain[1..].iter().map(|c| c.get_name().to_string()));
    for flag in &flags {
        if flag.long == "help" || flag.id.is_empty() {
            continue;
        }
        let values: Vec<&String> = parsed
            .values
            .iter()
            .filter(|(name, _)| *name == flag.long)
            .map(|(_, value)| value)
            .collect();
        let Some(last) = values.last() else { continue };
        match flag.emit {
            Emit::Switch => {
                if last.as_str() == "true" {
                    argv.push(format!("--{}", flag.long));
                }
            }
            Emit::Value => {
                if !(last.is_empty() && flag.path) {
                    argv.push(format!("--{}={last}", flag.long));
                }
            }
            Emit::Append => {
                for value in values {
                    argv.push(format!("--{}={value}", flag.long));
                }
            }
        }
    }
    argv.push("--".to_string());
    argv.extend(parsed.positionals);
    Outcome::Run { argv, extras }
}

/// A clap error on the canonical command line (a value a command's own parser refuses): as
/// cobra reports a flag error.
pub fn clap_error(root: &Command, argv: &[String], error: &clap::Error) -> u8 {
    use clap::error::{ContextKind, ContextValue};
    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(s)) => s.first().cloned(),
        _ => None,
    };
    let message = match (
        context(ContextKind::InvalidArg),
        context(ContextKind::InvalidValue),
    ) {
        (Some(arg), Some(value)) => {
            let name = arg.split([' ', '=']).next().unwrap_or(&arg).to_string();
            let reason = error
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string();
            format!(
                "invalid argument {} for {} flag: {reason}",
                quote(value.as_bytes()),
                quote(name.as_bytes())
            )
        }
        _ => error
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    };
    // The usage of the command the line named.
    let mut chain = vec![root];
    for word in argv.iter().skip(1) {
        let current = chain[chain.len() - 1];
        match current.find_subcommand(word) {
            Some(sub) => chain.push(sub),
            None => break,
        }
    }
    match usage_error(&usage::usage(&Node { chain: &chain }), &message) {
        Outcome::Exit(code) => code,
        Outcome::Run { .. } => exit::ERROR,
    }
}

/// cobra's report of a flag or argument error.
fn usage_error(usage: &str, message: &str) -> Outcome {
    eprintln!("Error: {message}");
    print_stdout(usage);
    eprintln!();
    eprintln!("Error: {message}");
    Outcome::Exit(exit::ERROR)
}

fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The `help [command]` command: the named command's usage, or the root's after `Unknown
/// help topic` when the words name none.
fn help(root: &Command, args: &[String]) -> Outcome {
    let help_flags: Vec<Flag> = {
        let chain = [root];
        let mut flags: Vec<Flag> = Node { chain: &chain }
            .flags()
            .into_iter()
            .filter(|f| f.long != "help")
            .map(|mut f| {
                f.inherited = true;
                f
            })
            .collect();
        flags.push(Flag::help("help"));
        flags.sort_by(|a, b| a.long.cmp(&b.long));
        flags
    };
    let parsed = match parse_flags(&help_flags, args) {
        Ok(parsed) => parsed,
        Err(message) => return usage_error(&usage::help_command_usage(root), &message),
    };
    if parsed.value_of("help") == Some("true") {
        print_stdout(&usage::help_command_usage(root));
        return Outcome::Exit(0);
    }
    let words = parsed.positionals;
    let (chain, rest, topic_is_help) = walk(root, &words);
    if topic_is_help && strip_flags(&rest, &[]).is_empty() {
        print_stdout(&usage::help_command_usage(root));
        return Outcome::Exit(0);
    }
    let node = Node { chain: &chain };
    if topic_is_help || (node.is_root() && !strip_flags(&rest, &node.flags()).is_empty()) {
        let topics: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
        eprintln!("Unknown help topic [{}]", topics.join(" "));
        print_stdout(&usage::root_usage_without_help(root));
        return Outcome::Exit(0);
    }
    print_stdout(&usage::usage(&node));
    Outcome::Exit(0)
}

enum Next<'a> {
    Command(&'a Command),
    Help,
}

/// cobra's `findNext`: the subcommand named `word`, or the only one it is a prefix of.
fn find_next<'a>(command: &'a Command, word: &str, root: bool) -> Option<Next<'a>> {
    if root && word == "help" {
        return Some(Next::Help);
    }
    if let Some(sub) = command.get_subcommands().find(|s| s.get_name() == word) {
        return Some(Next::Command(sub));
    }
    let mut matches: Vec<Next<'a>> = command
        .get_subcommands()
        .filter(|s| s.get_name().starts_with(word))
        .map(Next::Command)
        .collect();
    if root && "help".starts_with(word) {
        matches.push(Next::Help);
    }
    if matches.len() == 1 {
        matches.pop()
    } else {
        None
    }
}

/// cobra's `stripFlags`: the words of `args` that are not flags or flag values. A flag
/// that takes a value and is given without `=` takes the next word (unknown flags are
/// taken to need one).
fn strip_flags(args: &[String], flags: &[Flag]) -> Vec<String> {
    let takes_value_long =
        |name: &str| !flags.iter().any(|f| f.long == name && f.no_value.is_some());
    let takes_value_short = |name: &str| {
        let c = name.chars().next();
        !flags
            .iter()
            .any(|f| f.short.is_some() && f.short == c && f.no_value.is_some())
    };
    let mut words = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        i += 1;
        if s == "--" {
            break;
        }
        let long_with_value = s.starts_with("--") && !s.contains('=') && takes_value_long(&s[2..]);
        let short_with_value =
            s.starts_with('-') && !s.contains('=') && s.len() == 2 && takes_value_short(&s[1..]);
        if long_with_value || short_with_value {
            if args.len() - i <= 1 {
                break;
            }
            i += 1;
            continue;
        }
        if !s.is_empty() && !s.starts_with('-') {
            words.push(s.clone());
        }
    }
    words
}

/// cobra 1.1's `argsMinusFirstX`: `args` without the first word equal to `word`.
fn args_minus_first(args: &[String], word: &str) -> Vec<String> {
    match args.iter().position(|a| a == word) {
        Some(i) => {
            let mut out = args[..i].to_vec();
            out.extend_from_slice(&args[i + 1..]);
            out
        }
        None => args.to_vec(),
    }
}

/// cobra's suggestions for an unknown top-level word: commands within Levenshtein distance
/// 2 (ignoring case) or starting with it, in etcdctl's order.
fn suggestions(root: &Command, word: &str) -> String {
    let mut names: Vec<&str> = TOP_LEVEL_ORDER
        .iter()
        .copied()
        .filter(|n| root.find_subcommand(n).is_some())
        .collect();
    for sub in root.get_subcommands() {
        if !names.contains(&sub.get_name()) {
            names.push(sub.get_name());
        }
    }
    let found: Vec<&str> = names
        .into_iter()
        .filter(|name| {
            levenshtein(&word.to_lowercase(), &name.to_lowercase()) <= 2
                || name.to_lowercase().starts_with(&word.to_lowercase())
        })
        .collect();
    if found.is_empty() {
        return String::new();
    }
    let mut text = "\n\nDid you mean this?\n".to_string();
    for name in found {
        text.push_str(&format!("\t{name}\n"));
    }
    text
}

/// The edit distance of two byte strings.
fn levenshtein(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The flags pflag parsed: each value set (in order, by long name) and the positionals.
#[derive(Debug, Default)]
struct Parsed {
    values: Vec<(String, String)>,
    changed: BTreeSet<String>,
    positionals: Vec<String>,
}

impl Parsed {
    /// The flag's last value, if it was set.
    fn value_of(&self, long: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(name, _)| name == long)
            .map(|(_, value)| value.as_str())
    }

    /// The flag's value as pflag's `Value.String()` prints it (for `--debug`).
    fn display(&self, flag: &Flag) -> String {
        let values: Vec<&str> = self
            .values
            .iter()
            .filter(|(name, _)| *name == flag.long)
            .map(|(_, value)| value.as_str())
            .collect();
        match flag.kind {
            GoType::StringSlice if !values.is_empty() => format!("[{}]", values.join(",")),
            _ => match values.last() {
                Some(value) => value.to_string(),
                None if flag.id.is_empty() => String::new(),
                None => flag.default.clone(),
            },
        }
    }

    /// pflag's `Set`: checks `value` as the flag's Go type and records it (normalized). On
    /// an error nothing is recorded.
    fn set(&mut self, flag: &Flag, value: &str) -> Result<(), String> {
        let normalized = go_value(flag.kind, value).map_err(|reason| {
            format!(
                "invalid argument {} for {} flag: {reason}",
                quote(value.as_bytes()),
                quote(flag.error_name().as_bytes())
            )
        })?;
        if flag.kind == GoType::StringSlice {
            // The first value replaces the default; later ones add to it.
            for item in normalized {
                self.values.push((flag.long.clone(), item));
            }
        } else {
            self.values.push((
                flag.long.clone(),
                normalized.into_iter().next().unwrap_or_default(),
            ));
        }
        Ok(())
    }
}

/// `value` parsed as Go parses a flag of type `kind`, in the form clap's parsers take.
fn go_value(kind: GoType, value: &str) -> Result<Vec<String>, String> {
    Ok(match kind {
        GoType::Bool => vec![parse_bool(value)?.to_string()],
        GoType::Int => vec![parse_go_int(value)?.to_string()],
        GoType::Uint => vec![parse_go_uint(value)?.to_string()],
        GoType::Float => vec![value
            .parse::<f64>()
            .map_err(|_| {
                format!(
                    "strconv.ParseFloat: parsing {}: invalid syntax",
                    quote(value.as_bytes())
                )
            })?
            .to_string()],
        GoType::Duration => vec![go_duration(parse_duration(value)?)],
        GoType::String => vec![value.to_string()],
        GoType::StringSlice => {
            if value.is_empty() {
                Vec::new()
            } else {
                value.split(',').map(str::to_string).collect()
            }
        }
    })
}

/// The zero value Go's flag types are left with when `Set` fails (pflag assigns the failed
/// parse's result).
fn go_zero(kind: GoType) -> Option<&'static str> {
    match kind {
        GoType::Bool => Some("false"),
        GoType::Int | GoType::Uint | GoType::Float => Some("0"),
        GoType::Duration => Some("0s"),
        GoType::String | GoType::StringSlice => None,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: decimal, `0x` hex, `0o`/`0` octal, `0b` binary,
/// underscores between digits when a base prefix is given, an optional sign.
pub fn parse_go_int(text: &str) -> Result<i64, String> {
    let syntax = || {
        format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            quote(text.as_bytes())
        )
    };
    let range = || {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            quote(text.as_bytes())
        )
    };
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = parse_go_uint_digits(digits).map_err(|e| match e {
        UintError::Syntax => syntax(),
        UintError::Range => range(),
    })?;
    if negative {
        if magnitude > i64::MAX as u64 + 1 {
            return Err(range());
        }
        Ok((magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).map_err(|_| range())
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`.
pub fn parse_go_uint(text: &str) -> Result<u64, String> {
    parse_go_uint_digits(text).map_err(|e| {
        let what = match e {
            UintError::Syntax => "invalid syntax",
            UintError::Range => "value out of range",
        };
        format!(
            "strconv.ParseUint: parsing {}: {what}",
            quote(text.as_bytes())
        )
    })
}

enum UintError {
    Syntax,
    Range,
}

fn parse_go_uint_digits(text: &str) -> Result<u64, UintError> {
    let lower = text.to_ascii_lowercase();
    let (base, digits, prefixed) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest.to_string(), true)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest.to_string(), true)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    if digits.is_empty() {
        return Err(UintError::Syntax);
    }
    if digits.contains('_') {
        // Underscores only with a base prefix, each after the prefix or a digit and before
        // a digit.
        if !prefixed || digits.ends_with('_') || digits.contains("__") {
            return Err(UintError::Syntax);
        }
    }
    let mut value: u64 = 0;
    for c in digits.chars().filter(|c| *c != '_') {
        let digit = c.to_digit(base).ok_or(UintError::Syntax)?;
        value = value
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(UintError::Range)?;
    }
    Ok(value)
}

/// pflag's `Parse` with interspersed positionals.
fn parse_flags(flags: &[Flag], args: &[String]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        i += 1;
        if s.len() < 2 || !s.starts_with('-') {
            parsed.positionals.push(s.clone());
            continue;
        }
        if s == "--" {
            parsed.positionals.extend_from_slice(&args[i..]);
            break;
        }
        if let Some(body) = s.strip_prefix("--") {
            if body.starts_with('-') || body.starts_with('=') {
                return Err(format!("bad flag syntax: {s}"));
            }
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(flag) = flags.iter().find(|f| f.long == name) else {
                return Err(format!("unknown flag: --{name}"));
            };
            let value = match (inline, &flag.no_value) {
                (Some(value), _) => value.to_string(),
                (None, Some(default)) => default.clone(),
                (None, None) if i < args.len() => {
                    i += 1;
                    args[i - 1].clone()
                }
                (None, None) => return Err(format!("flag needs an argument: {s}")),
            };
            parsed.set(flag, &value)?;
            parsed.changed.insert(flag.long.clone());
            continue;
        }
        // One or more shorthands: "-h", "-wjson", "-w=json", "-w json".
        let mut shorthands: &str = &s[1..];
        while let Some(c) = shorthands.chars().next() {
            let Some(flag) = flags.iter().find(|f| f.short == Some(c)) else {
                return Err(format!(
                    "unknown shorthand flag: {} in -{shorthands}",
                    go_char_quote(c)
                ));
            };
            let after = &shorthands[c.len_utf8()..];
            let value;
            if let Some(inline) = after.strip_prefix('=').filter(|_| after.len() > 1) {
                value = inline.to_string();
                shorthands = "";
            } else if let Some(default) = &flag.no_value {
                value = default.clone();
                shorthands = after;
            } else if !after.is_empty() {
                value = after.to_string();
                shorthands = "";
            } else if i < args.len() {
                value = args[i].clone();
                i += 1;
                shorthands = "";
            } else {
                return Err(format!(
                    "flag needs an argument: {} in -{shorthands}",
                    go_char_quote(c)
                ));
            }
            parsed.set(flag, &value)?;
            parsed.changed.insert(flag.long.clone());
        }
    }
    Ok(parsed)
}

/// Go's `%q` of a byte (a rune literal): 'x'.
fn go_char_quote(c: char) -> String {
    match c {
        '\'' => "'\\''".to_string(),
        '\\' => "'\\\\'".to_string(),
        c if c.is_control() => format!("'\\x{:02x}'", c as u32),
        c => format!("'{c}'"),
    }
}

/// etcd's `flags.SetPflagsFromEnv` over the inherited flags: each flag not given on the
/// command line takes its non-empty `ETCDCTL_*` variable (a value that does not parse leaves
/// the Go zero value, as pflag does, and is otherwise ignored); a variable for a flag that
/// was given is fatal; other `ETCDCTL_*` variables are warned about.
fn apply_env(parsed: &mut Parsed, inherited: &[Flag], env: &[(String, String)]) -> Result<(), u8> {
    let already_set: BTreeSet<String> = inherited
        .iter()
        .filter(|f| parsed.changed.contains(&f.long))
        .map(Flag::env_name)
        .collect();
    let mut used = BTreeSet::new();
    for flag in inherited {
        let key = flag.env_name();
        if already_set.contains(&key) {
            continue;
        }
        let Some((_, value)) = env.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        used.insert(key);
        if flag.long == "command-timeout" {
            // etcdctl's commands start their timeout before the client (and with it the
            // environment) is read, so ETCDCTL_COMMAND_TIMEOUT is accepted and has no
            // effect.
            continue;
        }
        if flag.kind == GoType::StringSlice {
            parsed.values.retain(|(name, _)| *name != flag.long);
        }
        if parsed.set(flag, value).is_err() {
            if let Some(zero) = go_zero(flag.kind) {
                parsed.values.push((flag.long.clone(), zero.to_string()));
            }
        }
    }
    for (key, value) in env {
        if used.contains(key) {
            continue;
        }
        if already_set.contains(key) {
            log_line(
                "fatal",
                "flags/flag.go:85",
                "conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))",
                key,
            );
            return Err(exit::ERROR);
        }
        if key.starts_with("ETCDCTL_") {
            log_line(
                "warn",
                "flags/flag.go:93",
                "unrecognized environment variable",
                &format!("{key}={value}"),
            );
        }
    }
    Ok(())
}

/// A line of etcd's zap JSON logger on stderr.
fn log_line(level: &str, caller: &str, message: &str, variable: &str) {
    eprintln!(
        "{{\"level\":{},\"ts\":{},\"caller\":{},\"msg\":{},\"environment-variable\":{}}}",
        json_string(level),
        json_string(&zap_timestamp()),
        json_string(caller),
        json_string(message),
        json_string(variable)
    );
}

/// Now, as etcd's zap logger writes it: `2006-01-02T15:04:05.000000Z` (UTC).
pub fn zap_timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_as_go_parses_them_with_base_zero() {
        assert_eq!(parse_go_int("10"), Ok(10));
        assert_eq!(parse_go_int("0x10"), Ok(16));
        assert_eq!(parse_go_int("010"), Ok(8));
        assert_eq!(parse_go_int("-0b11"), Ok(-3));
        assert_eq!(parse_go_int("0x_1_0"), Ok(16));
        assert_eq!(
            parse_go_int("abc"),
            Err("strconv.ParseInt: parsing \"abc\": invalid syntax".to_string())
        );
        assert_eq!(
            parse_go_int("1_0"),
            Err("strconv.ParseInt: parsing \"1_0\": invalid syntax".to_string())
        );
        assert_eq!(
            parse_go_int("99999999999999999999"),
            Err(
                "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
                    .to_string()
            )
        );
        assert_eq!(parse_go_int("-9223372036854775808"), Ok(i64::MIN));
        assert!(parse_go_uint("-1").is_err());
    }

    #[test]
    fn levenshtein_distance() {
        assert_eq!(levenshtein("gett", "get"), 1);
        assert_eq!(levenshtein("e", "del"), 2);
        assert_eq!(levenshtein("", "abc"), 3);
    }

    #[test]
    fn strip_flags_skips_flag_values_as_cobra_does() {
        let flags = vec![
            Flag::help("x"),
            Flag {
                id: "w".into(),
                long: "write-out".into(),
                short: Some('w'),
                kind: GoType::String,
                default: "simple".into(),
                no_value: None,
                usage: String::new(),
                emit: Emit::Value,
                inherited: false,
                path: false,
            },
        ];
        let args: Vec<String> = ["-w", "json", "--hex", "get", "k"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // "--hex" is unknown here, so it is taken to need a value ("get").
        assert_eq!(strip_flags(&args, &flags), vec!["k".to_string()]);
    }
}
