//! `report`: turns the raw JSON that `perf/compare.sh` saved into a markdown page and SVG plots.
//!
//! The raw directory holds `meta.json` (what ran where), `disk.json` (from `disk --json`), and
//! one `<system>-<workload>-r<round>.json` per run (a `--json` summary), or a
//! `<system>-<workload>-r<round>.err` with the error text when that run failed. Systems are
//! `etcd` and `keel`. Workloads named `sweep-<base>-c<clients>` form a client-count sweep.
//! Each cell of the table is the median over rounds; the CDF plot uses the median round (by
//! ops/s) of each system.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use plotters::prelude::*;

use crate::disk::DiskSummary;
use crate::run::Summary;

/// Flags of `report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The raw directory written by perf/compare.sh.
    #[arg(long)]
    input: PathBuf,
    /// The markdown file to write; plots go to a directory of the same name without ".md".
    #[arg(long)]
    output: PathBuf,
}

const SYSTEMS: [&str; 2] = ["etcd", "keel"];

/// (clients, ops/s) points of one sweep, by system.
type SweepPoints = BTreeMap<&'static str, Vec<(u64, f64)>>;

/// The order workloads appear in; others follow alphabetically.
const ORDER: &[&str] = &[
    "put-seq",
    "put-100c",
    "range-l-100c",
    "range-s-100c",
    "txn-mixed-100c",
    "watch-latency-100w",
    "k8s-100c",
];

/// What each standard workload of compare.sh is, for the table.
fn describe(workload: &str) -> &'static str {
    match workload {
        "put-seq" => "sequential put: 1 client, 1 connection",
        "put-100c" => "put: 100 clients on 10 connections",
        "range-l-100c" => "linearizable range (1 key of 1000): 100 clients",
        "range-s-100c" => "serializable range (1 key of 1000): 100 clients",
        "txn-mixed-100c" => "txn, 4 reads : 1 write: 100 clients",
        "watch-latency-100w" => "put → event delivery to 100 watchers; 100 puts/s is the rate",
        "k8s-100c" => "apiserver-like mix: 100 clients",
        _ => "",
    }
}

/// A description for any workload, including sweep points.
fn description(workload: &str) -> String {
    match sweep_parts(workload) {
        Some((base, 1)) => format!("{base} with 1 client (client-count sweep)"),
        Some((base, clients)) => format!("{base} with {clients} clients (client-count sweep)"),
        None => describe(workload).to_string(),
    }
}

/// All runs of one workload on one system.
#[derive(Default)]
struct Runs {
    ok: Vec<Summary>,
    failed: Vec<String>,
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

impl Runs {
    fn median_of(&self, field: impl Fn(&Summary) -> f64) -> Option<f64> {
        let mut values: Vec<f64> = self.ok.iter().map(field).collect();
        median(&mut values)
    }

    /// The run whose ops/s is the median (the lower middle for an even count).
    fn median_run(&self) -> Option<&Summary> {
        let mut sorted: Vec<&Summary> = self.ok.iter().collect();
        sorted.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
        sorted.get(sorted.len().saturating_sub(1) / 2).copied()
    }

    fn errors(&self) -> u64 {
        self.ok.iter().map(|s| s.errors).sum()
    }
}

/// Splits "etcd-put-seq-r2.json" into ("etcd", "put-seq", 2).
fn parse_name(file: &str) -> Option<(String, String, u32)> {
    let stem = file
        .strip_suffix(".json")
        .or_else(|| file.strip_suffix(".err"))?;
    let (system, rest) = stem.split_once('-')?;
    if !SYSTEMS.contains(&system) {
        return None;
    }
    let (workload, round) = rest.rsplit_once("-r")?;
    Some((
        system.to_string(),
        workload.to_string(),
        round.parse().ok()?,
    ))
}

fn sort_key(workload: &str) -> (usize, u64, String) {
    if let Some(position) = ORDER.iter().position(|w| *w == workload) {
        return (position, 0, String::new());
    }
    if let Some((base, clients)) = sweep_parts(workload) {
        return (ORDER.len(), clients, base.to_string());
    }
    (ORDER.len() + 1, 0, workload.to_string())
}

/// "sweep-put-c100" → ("put", 100).
fn sweep_parts(workload: &str) -> Option<(&str, u64)> {
    let rest = workload.strip_prefix("sweep-")?;
    let (base, clients) = rest.rsplit_once("-c")?;
    Some((base, clients.parse().ok()?))
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "n/a".to_string(),
    }
}

fn ratio(keel: Option<f64>, etcd: Option<f64>) -> String {
    match (keel, etcd) {
        (Some(k), Some(e)) if e > 0.0 => format!("{:.2}×", k / e),
        _ => "n/a".to_string(),
    }
}

/// Writes the report.
pub fn run(args: ReportArgs) -> Result<()> {
    let meta: serde_json::Value = std::fs::read(args.input.join("meta.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null);
    let disk: Option<DiskSummary> = std::fs::read(args.input.join("disk.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());

    let mut runs: BTreeMap<(String, String), Runs> = BTreeMap::new();
    let mut workloads = BTreeSet::new();
    let entries = std::fs::read_dir(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((system, workload, _round)) = parse_name(&name) else {
            continue;
        };
        workloads.insert(workload.clone());
        let slot = runs.entry((system, workload)).or_default();
        let text = std::fs::read_to_string(entry.path())?;
        if name.ends_with(".err") {
            slot.failed
                .push(text.lines().last().unwrap_or("failed").to_string());
            continue;
        }
        match serde_json::from_str::<Summary>(&text) {
            Ok(summary) => slot.ok.push(summary),
            Err(error) => slot.failed.push(format!("unreadable summary: {error}")),
        }
    }
    let mut workloads: Vec<String> = workloads.into_iter().collect();
    workloads.sort_by_key(|w| sort_key(w));
    let empty = Runs::default();
    let get = |system: &str, workload: &str| -> &Runs {
        runs.get(&(system.to_string(), workload.to_string()))
            .unwrap_or(&empty)
    };

    let plot_dir = args.output.with_extension("");
    std::fs::create_dir_all(&plot_dir)
        .with_context(|| format!("creating {}", plot_dir.display()))?;
    let plot_dir_name = plot_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();

    let text = |key: &str| {
        meta.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    let mut md = String::new();
    writeln!(md, "# Keel vs etcd: {} on {}", text("date"), text("host"))?;
    writeln!(md)?;
    writeln!(
        md,
        "Written by `keel-bench report` from `{}`.",
        args.input.display()
    )?;
    writeln!(md)?;
    writeln!(
        md,
        "- Members per cluster: {}",
        meta.get("members").unwrap_or(&serde_json::json!(1))
    )?;
    writeln!(
        md,
        "- Rounds: {} (each cell is the median over rounds)",
        meta.get("rounds").unwrap_or(&serde_json::json!("?"))
    )?;
    writeln!(md, "- Durations: {}", text("durations"))?;
    writeln!(md, "- etcd: {}", text("etcd_version"))?;
    writeln!(md, "- Keel: {}", text("keel_status"))?;
    writeln!(md, "- Machine: {}", text("machine"))?;
    writeln!(md, "- Data directories: {}", text("data_fs"))?;
    writeln!(md)?;

    writeln!(md, "## Results")?;
    writeln!(md)?;
    writeln!(md, "Latencies in µs. Ratios are Keel/etcd: above 1× is better for ops/s, below 1× is better for latency.")?;
    writeln!(md)?;
    writeln!(md, "| workload | etcd ops/s | Keel ops/s | ops/s Keel/etcd | etcd p50 | Keel p50 | etcd p99 | Keel p99 | p99 Keel/etcd |")?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let mut notes = Vec::new();
    for workload in &workloads {
        let mut cells = vec![workload.clone()];
        let etcd = get("etcd", workload);
        let keel = get("keel", workload);
        let cell = |runs: &Runs, f: &dyn Fn(&Summary) -> f64, decimals: usize| {
            if runs.ok.is_empty() && !runs.failed.is_empty() {
                "failed".to_string()
            } else {
                fmt_opt(runs.median_of(f), decimals)
            }
        };
        let ops = |s: &Summary| s.ops_per_sec;
        let p50 = |s: &Summary| s.latency_us.p50 as f64;
        let p99 = |s: &Summary| s.latency_us.p99 as f64;
        cells.push(cell(etcd, &ops, 0));
        cells.push(cell(keel, &ops, 0));
        cells.push(ratio(keel.median_of(ops), etcd.median_of(ops)));
        cells.push(cell(etcd, &p50, 0));
        cells.push(cell(keel, &p50, 0));
        cells.push(cell(etcd, &p99, 0));
        cells.push(cell(keel, &p99, 0));
        cells.push(ratio(keel.median_of(p99), etcd.median_of(p99)));
        writeln!(md, "| {} |", cells.join(" | "))?;
        for system in SYSTEMS {
            let runs = get(system, workload);
            if runs.errors() > 0 {
                notes.push(format!(
                    "{system} {workload}: {} failed requests over all rounds",
                    runs.errors()
                ));
            }
            for failure in &runs.failed {
                if system == "keel" && keel.ok.is_empty() {
                    continue;
                }
                notes.push(format!("{system} {workload}: run failed: {failure}"));
            }
            for summary in &runs.ok {
                if let Some(lost) = summary.extra.get("events_lost").and_then(|v| v.as_u64()) {
                    if lost > 0 {
                        notes.push(format!("{system} {workload}: {lost} watch events lost"));
                    }
                }
            }
        }
    }
    writeln!(md)?;
    for workload in &workloads {
        let description = description(workload);
        if !description.is_empty() {
            writeln!(md, "- `{workload}`: {description}")?;
        }
    }
    writeln!(md)?;
    if !notes.is_empty() {
        writeln!(md, "Problems seen:")?;
        writeln!(md)?;
        for note in &notes {
            writeln!(md, "- {note}")?;
        }
        writeln!(md)?;
    }

    writeln!(md, "## The disk's physical limit")?;
    writeln!(md)?;
    match &disk {
        Some(disk) => {
            writeln!(
                md,
                "`keel-bench disk` on `{}`: {} × {} B writes into a zero-filled file.",
                disk.dir, disk.count, disk.block_bytes
            )?;
            writeln!(md)?;
            writeln!(md, "| what | p50 µs | p99 µs |")?;
            writeln!(md, "|---|---:|---:|")?;
            match &disk.direct_dsync_us {
                Some(l) => writeln!(
                    md,
                    "| O_DIRECT\\|O_DSYNC 4 KiB write (the floor) | {} | {} |",
                    l.p50, l.p99
                )?,
                None => writeln!(md, "| O_DIRECT\\|O_DSYNC 4 KiB write | n/a | n/a |")?,
            }
            let l = &disk.write_fdatasync_us;
            writeln!(md, "| write + fdatasync 4 KiB | {} | {} |", l.p50, l.p99)?;
            for system in SYSTEMS {
                let runs = get(system, "put-seq");
                let p50 = runs.median_of(|s| s.latency_us.p50 as f64);
                let p99 = runs.median_of(|s| s.latency_us.p99 as f64);
                writeln!(
                    md,
                    "| {system} sequential put | {} | {} |",
                    fmt_opt(p50, 0),
                    fmt_opt(p99, 0)
                )?;
            }
            writeln!(md)?;
            if let (Some(floor), Some(put)) = (
                disk.direct_dsync_us.as_ref().map(|l| l.p50 as f64),
                get("etcd", "put-seq").median_of(|s| s.latency_us.p50 as f64),
            ) {
                if floor > 0.0 {
                    writeln!(
                        md,
                        "etcd's sequential put p50 is {:.1}× the device's durable-write floor.",
                        put / floor
                    )?;
                }
            }
            if let (Some(floor), Some(put)) = (
                disk.direct_dsync_us.as_ref().map(|l| l.p50 as f64),
                get("keel", "put-seq").median_of(|s| s.latency_us.p50 as f64),
            ) {
                if floor > 0.0 {
                    writeln!(
                        md,
                        "Keel's sequential put p50 is {:.1}× the floor.",
                        put / floor
                    )?;
                }
            }
            writeln!(md)?;
        }
        None => writeln!(md, "No disk measurement in the raw directory.\n")?,
    }

    writeln!(md, "## Plots")?;
    writeln!(md)?;
    for workload in &workloads {
        if sweep_parts(workload).is_some() {
            continue;
        }
        let mut series = Vec::new();
        for system in SYSTEMS {
            if let Some(run) = get(system, workload).median_run() {
                if !run.latency_cdf_us.is_empty() {
                    series.push((system, run.latency_cdf_us.clone()));
                }
            }
        }
        if series.is_empty() {
            continue;
        }
        let file = format!("latency-{workload}.svg");
        cdf_plot(&plot_dir.join(&file), workload, &series)?;
        writeln!(md, "![{workload} latency CDF]({plot_dir_name}/{file})")?;
        writeln!(md)?;
    }
    let mut sweeps: BTreeMap<String, SweepPoints> = BTreeMap::new();
    for workload in &workloads {
        if let Some((base, clients)) = sweep_parts(workload) {
            for system in SYSTEMS {
                if let Some(ops) = get(system, workload).median_of(|s| s.ops_per_sec) {
                    sweeps
                        .entry(base.to_string())
                        .or_default()
                        .entry(system)
                        .or_default()
                        .push((clients, ops));
                }
            }
        }
    }
    for (base, by_system) in &sweeps {
        let file = format!("throughput-vs-clients-{base}.svg");
        sweep_plot(&plot_dir.join(&file), base, by_system)?;
        writeln!(
            md,
            "![{base} throughput vs clients]({plot_dir_name}/{file})"
        )?;
        writeln!(md)?;
    }
    writeln!(
        md,
        "Raw JSON summaries (one per system, workload and round): `{}`.",
        args.input.display()
    )?;

    std::fs::write(&args.output, md)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "keel-bench report: wrote {} and {}/",
        args.output.display(),
        plot_dir.display()
    );
    Ok(())
}

fn color(system: &str) -> RGBColor {
    if system == "keel" {
        RGBColor(0xd9, 0x5f, 0x02)
    } else {
        RGBColor(0x1b, 0x9e, 0x77)
    }
}

/// The "nines" of a quantile: 0.9 → 1, 0.99 → 2; 1.0 (the maximum) is drawn at 6.
fn nines(quantile: f64) -> f64 {
    if quantile >= 1.0 {
        6.0
    } else {
        -(1.0 - quantile).log10()
    }
}

fn cdf_plot(path: &Path, workload: &str, series: &[(&str, Vec<(f64, u64)>)]) -> Result<()> {
    let max = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .max()
        .unwrap_or(1);
    let min = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .min()
        .unwrap_or(1);
    // Whole decades: plotters labels a log axis reliably only from a power of ten.
    let low = 10f64.powf((min.max(1) as f64).log10().floor());
    let high = 10f64.powf((max.max(2) as f64).log10().ceil());
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{workload}: latency by percentile"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..6.0f64, (low..high).log_scale())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_labels(12)
        .y_labels(20)
        .light_line_style(WHITE)
        // Only whole "nines" get a label: 0 → p0, 1 → p90, 2 → p99, ... 5 → p99.999.
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() > 0.01 {
                return String::new();
            }
            match v.round() as i64 {
                0 => "p0".to_string(),
                1 => "p90".to_string(),
                2 => "p99".to_string(),
                3 => "p99.9".to_string(),
                4 => "p99.99".to_string(),
                5 => "p99.999".to_string(),
                6 => "max".to_string(),
                _ => String::new(),
            }
        })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    for (system, points) in series {
        let style = color(system);
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(q, v)| (nines(*q), *v as f64)),
                style.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .label(*system)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

fn sweep_plot(path: &Path, base: &str, by_system: &SweepPoints) -> Result<()> {
    let max_clients = by_system
        .values()
        .flatten()
        .map(|p| p.0)
        .max()
        .unwrap_or(1)
        .max(2);
    let max_ops = by_system
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{base}: throughput vs clients"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (1f64..(max_clients as f64) * 1.5).log_scale(),
            0f64..max_ops * 1.15,
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc("ops/s")
        .light_line_style(WHITE)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    for (system, points) in by_system {
        let mut points = points.clone();
        points.sort_by_key(|p| p.0);
        let style = color(system);
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(c, o)| (*c as f64, *o)),
                style.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .label(*system)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .iter()
                    .map(|(c, o)| Circle::new((*c as f64, *o), 4, style.filled())),
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_file_names_split_into_system_workload_and_round() {
        assert_eq!(
            parse_name("etcd-put-seq-r2.json"),
            Some(("etcd".into(), "put-seq".into(), 2))
        );
        assert_eq!(
            parse_name("keel-sweep-put-c100-r1.err"),
            Some(("keel".into(), "sweep-put-c100".into(), 1))
        );
        assert_eq!(parse_name("disk.json"), None);
        assert_eq!(parse_name("meta.json"), None);
        assert_eq!(parse_name("etcd-put-seq-r1.stderr"), None);
    }

    #[test]
    fn sweeps_and_medians() {
        assert_eq!(sweep_parts("sweep-put-c1000"), Some(("put", 1000)));
        assert_eq!(sweep_parts("put-100c"), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert!(sort_key("put-seq") < sort_key("k8s-100c"));
        assert!(sort_key("sweep-put-c10") < sort_key("sweep-put-c100"));
    }

    #[test]
    fn nines_spread_the_tail() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), 6.0);
    }
}
