//! `wsgate bench`: a load generator for any wsgate deployment.

/// The `wsgate bench` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs a benchmark.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("wsgate bench is not built yet")
}
