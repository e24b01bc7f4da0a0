//! `cargo xtask bench replay`.

pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("bench replay is not written yet")
}
