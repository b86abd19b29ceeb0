//! `switchyard-fuzz TARGET [--seconds N] [--seed S] [--out DIR]`: runs one fuzz target for a
//! while (10 minutes by default) and prints what it did. Each finding's input is written to
//! `DIR/TARGET-N.bin` (default `fuzz/findings`); the exit status is 1 when there was one.
//! `switchyard-fuzz --list` names the targets.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use switchyard_fuzz::alloc::CountingAlloc;
use switchyard_fuzz::driver::{escape, fuzz, Budget};
use switchyard_fuzz::targets;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut target = None;
    let mut seconds = 600u64;
    let mut seed = None;
    let mut out = PathBuf::from("fuzz/findings");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--list" => {
                for t in targets::all() {
                    println!("{}", t.name);
                }
                return Ok(());
            }
            "--seconds" => {
                seconds = args
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds needs a whole number of seconds")?
            }
            "--seed" => {
                seed = Some(
                    args.next()
                        .context("--seed needs a number")?
                        .parse()
                        .context("--seed needs a whole number")?,
                )
            }
            "--out" => out = PathBuf::from(args.next().context("--out needs a folder")?),
            name if !name.starts_with('-') && target.is_none() => target = Some(name.to_string()),
            other => bail!("unknown argument {other:?}; usage: switchyard-fuzz TARGET [--seconds N] [--seed S] [--out DIR] | --list"),
        }
    }
    let Some(name) = target else {
        bail!("name a target (switchyard-fuzz --list names them)");
    };
    let Some(target) = targets::by_name(&name) else {
        bail!("no target {name:?} (switchyard-fuzz --list names them)");
    };
    let seed = seed.unwrap_or_else(rand::random);
    println!("fuzzing {name} for {seconds} s with seed {seed}");
    let report = fuzz(
        &target,
        seed,
        Budget {
            executions: u64::MAX,
            time: Duration::from_secs(seconds),
        },
    );
    let secs = report.elapsed.as_secs_f64();
    println!(
        "{name}: {} executions in {secs:.0} s ({:.0}/s), {} distinct outcomes, pool {}, \
         peak allocation of one execution {} bytes, {} findings",
        report.executions,
        report.executions as f64 / secs.max(1e-9),
        report.outcomes,
        report.pool,
        report.peak_alloc.map_or("?".to_string(), |p| p.to_string()),
        report.findings.len()
    );
    if report.findings.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (i, finding) in report.findings.iter().enumerate() {
        let file = out.join(format!("{name}-{i}.bin"));
        std::fs::write(&file, &finding.input)
            .with_context(|| format!("writing {}", file.display()))?;
        println!(
            "finding {i}: {}\n  input ({}): {}",
            finding.what,
            file.display(),
            escape(&finding.input)
        );
    }
    std::process::exit(1);
}
