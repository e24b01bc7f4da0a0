//! `cargo xtask bench probes`.

pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("bench probes is not written yet")
}
