//! Load generator for MQTT 3.1.1 brokers, and a "relay" ceiling server.
//!
//! `cargo bench --bench loadgen -- <scenario> --host 127.0.0.1 --port N [options]`
//! prints one JSON line (the figures, `"ok"` and any problems) and one human line.
//! Exit status: 0 ok, 1 a check failed (a QoS ≥ 1 message lost, any duplicate, retained
//! messages not cleared), 2 the run could not be completed (refused, timed out, usage).
//!
//! It speaks MQTT through its own minimal codec (`mqtt`), not Herald's, so that it
//! measures every broker the same way. See benches/compare.sh for the side-by-side runs.

mod args;
mod conn;
mod flow;
mod mqtt;
mod relay;
mod report;
mod scenarios;
mod sse;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match args::Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("loadgen: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        match args.scenario.as_str() {
            "fan-in" => scenarios::fan_in(&args).await,
            "round-trip" => scenarios::round_trip(&args).await,
            "latency" => scenarios::latency(&args).await,
            "fan-out" => scenarios::fan_out(&args).await,
            "idle" => scenarios::idle(&args).await,
            "retained" => scenarios::retained(&args).await,
            "offline-queue" => scenarios::offline_queue(&args).await,
            "sse-idle" => sse::idle(&args).await,
            "sse-fan-out" => sse::fan_out(&args).await,
            "relay" => {
                relay::serve(args.addr()?).await?;
                Err("relay stopped".into())
            }
            other => Err(format!("unknown scenario {other}\n{}", args::USAGE).into()),
        }
    });
    match outcome {
        Ok(report) => {
            println!("{}", report.json());
            println!("{}", report.human());
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("loadgen {}: {e}", args.scenario);
            ExitCode::from(2)
        }
    }
}
