//! `cargo xtask bench [NAME]`: each benchmark measures dockwatch against a
//! baseline in the same run and prints ratios; BENCHMARKS.md records them.

pub mod matcher;
pub mod posture;
pub mod probes;
pub mod replay;
pub mod sink;

type Bench = fn() -> anyhow::Result<()>;

const ALL: &[(&str, Bench)] = &[
    ("replay", replay::run),
    ("matcher", matcher::run),
    ("sink", sink::run),
    ("probes", probes::run),
    ("posture", posture::run),
];

pub fn run(name: Option<&str>) -> anyhow::Result<()> {
    match name {
        None => ALL.iter().try_for_each(|(_, bench)| bench()),
        Some(name) => match ALL.iter().find(|(n, _)| *n == name) {
            Some((_, bench)) => bench(),
            None => {
                let names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
                anyhow::bail!("no benchmark {name:?}; choose one of {}", names.join(", "))
            }
        },
    }
}
