//! `warden backtest --series FILE|DIR`: detectors over metric series, one file or a folder
//! of them, with the data-quality report of each file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use warden_config::DetectorConfig;
use warden_stream::backtest::SeriesReport;
use warden_stream::backtest::series::{
    FileReport, Windows, render_scored, run_file, series_detectors,
};

use super::backtest::{BacktestArgs, emit};

/// Parse `--param KEY=VALUE` arguments.
fn params(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("--param {p}: expected KEY=VALUE"))
        })
        .collect()
}

/// Every `*.csv` under `dir`, sorted, except those under `skip` (the output folder).
fn csv_files(dir: &Path, skip: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if skip.is_some_and(|s| same(s, &d)) {
            continue;
        }
        let entries = std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?;
        for e in entries {
            let path = e
                .with_context(|| format!("reading {}", d.display()))?
                .path();
            if path.is_dir() {
                todo.push(path);
            } else if path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("csv"))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn same(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} files  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub fn run(series: &Path, args: &BacktestArgs) -> anyhow::Result<()> {
    let detectors = series_detectors(&args.detectors, &params(&args.params)?)?;
    let windows = match &args.labels {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(Windows::parse(&p.display().to_string(), &text)?)
        }
        None => None,
    };
    let windows = windows.as_ref();
    let format = args.format.as_deref();
    if let Some(f) = format.filter(|f| !["csv", "json", "table"].contains(f)) {
        bail!("unknown format `{f}` for --series (csv, json, table)");
    }
    let out_dir = args.out.as_ref().filter(|o| series.is_dir() || o.is_dir());
    if series.is_file() && out_dir.is_none() {
        return one_file(
            series,
            &detectors,
            windows,
            format.unwrap_or("csv"),
            args.out.as_ref(),
        );
    }
    if !series.exists() {
        bail!("{}: no such file or folder", series.display());
    }
    let format = format.unwrap_or("table");
    if format == "csv" && out_dir.is_none() {
        bail!("--format csv writes one scored file per series: give --out DIR");
    }
    let (root, files) = if series.is_dir() {
        (
            series.to_path_buf(),
            csv_files(series, out_dir.map(PathBuf::as_path))?,
        )
    } else {
        let parent = series.parent().unwrap_or(Path::new("")).to_path_buf();
        (parent, vec![series.to_path_buf()])
    };
    if files.is_empty() {
        bail!("{}: no .csv files", series.display());
    }
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bar = progress_bar(files.len() as u64);
    let mut reports = Vec::with_capacity(files.len());
    for path in &files {
        let name = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        bar.set_message(name.clone());
        reports.push(score_file(
            path,
            &name,
            &detectors,
            windows,
            out_dir.map(PathBuf::as_path),
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = SeriesReport::new(&detectors, reports);
    let json = format!("{}\n", serde_json::to_string_pretty(&report)?);
    if let Some(dir) = out_dir {
        for (file, text) in [("summary.json", &json), ("summary.md", &report.markdown())] {
            let p = dir.join(file);
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        }
    }
    print!(
        "{}",
        if format == "json" {
            json
        } else {
            report.table()
        }
    );
    let failed = report.failed_files();
    if failed > 0 {
        bail!(
            "{failed} of {} file(s) could not be scored (see `error` in the summary)",
            files.len()
        );
    }
    Ok(())
}

/// Read, score and (with an output folder) write one file of a folder run; failures are kept
/// in the report.
fn score_file(
    path: &Path,
    name: &str,
    detectors: &[DetectorConfig],
    windows: Option<&Windows>,
    out_dir: Option<&Path>,
) -> FileReport {
    let result = std::fs::read(path)
        .map_err(|e| format!("{name}: {e}"))
        .and_then(|bytes| run_file(name, &bytes, detectors, windows).map_err(|e| e.to_string()));
    let (series, runs) = match result {
        Ok(r) => r,
        Err(e) => return FileReport::failed(name.to_string(), e),
    };
    if let Some(dir) = out_dir {
        let target = dir.join(name);
        let written = target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&target, render_scored(&series, &runs)));
        if let Err(e) = written {
            return FileReport::failed(
                name.to_string(),
                format!("writing {}: {e}", target.display()),
            );
        }
    }
    FileReport::scored(name.to_string(), &series, &runs)
}

/// One file: the scored rows (CSV), the summary (table) or the report (JSON), to standard
/// output or `out`; data-quality findings go to standard error.
fn one_file(
    path: &Path,
    detectors: &[DetectorConfig],
    windows: Option<&Windows>,
    format: &str,
    out: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display().to_string();
    let (series, runs) = run_file(&name, &bytes, detectors, windows)?;
    let text = match format {
        "csv" => {
            for w in series.quality.warnings() {
                eprintln!("warning: {name}: {w}");
            }
            render_scored(&series, &runs)
        }
        _ => {
            let report =
                SeriesReport::new(detectors, vec![FileReport::scored(name, &series, &runs)]);
            if format == "json" {
                format!("{}\n", serde_json::to_string_pretty(&report)?)
            } else {
                report.table()
            }
        }
    };
    emit(out, &text)
}
