//! `cargo xtask bench matcher`.

pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("bench matcher is not written yet")
}
