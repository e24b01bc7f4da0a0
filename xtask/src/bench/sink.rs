//! `cargo xtask bench sink`.

pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("bench sink is not written yet")
}
