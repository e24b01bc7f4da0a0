//! The workload of `cargo xtask bench probes`, compiled on its own with
//! `rustc -O` by the benchmark (std only), so that each run is a fresh
//! process started after auditd enabled auditing, with nothing of xtask in
//! it. Usage: `workload DIR`; prints wall and CPU milliseconds per phase:
//! 1M 4 KiB writes to /dev/null, 200k 4 KiB writes to a file in DIR,
//! 100k open+close read-only and 100k open+close for write of that file.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[repr(C)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    rest: [i64; 14],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

/// CPU time (user + system) used so far.
fn cpu_time() -> Duration {
    let mut usage = Rusage {
        utime: [0; 2],
        stime: [0; 2],
        rest: [0; 14],
    };
    // SAFETY: getrusage(RUSAGE_SELF) into a struct of the kernel's layout.
    unsafe { getrusage(0, &mut usage) };
    let tv = |t: [i64; 2]| Duration::new(t[0] as u64, t[1] as u32 * 1000);
    tv(usage.utime) + tv(usage.stime)
}

fn timed(phase: impl FnOnce() -> std::io::Result<()>) -> (Duration, Duration) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    phase().expect("workload phase");
    (wall.elapsed(), cpu_time() - cpu)
}

fn main() {
    let dir = PathBuf::from(std::env::args_os().nth(1).expect("usage: workload DIR"));
    let buf = [0x5au8; 4096];
    let mut times = Vec::new();

    let mut null = File::options().write(true).open("/dev/null").unwrap();
    times.push(timed(|| {
        for _ in 0..1_000_000 {
            null.write_all(&buf)?;
        }
        Ok(())
    }));

    let path = dir.join("unwatched.dat");
    let file = File::create(&path).unwrap();
    times.push(timed(|| {
        for i in 0..200_000u64 {
            file.write_all_at(&buf, (i % 256) * 4096)?;
        }
        Ok(())
    }));

    times.push(timed(|| {
        for _ in 0..100_000 {
            drop(File::open(&path)?);
        }
        Ok(())
    }));

    times.push(timed(|| {
        for _ in 0..100_000 {
            drop(File::options().write(true).open(&path)?);
        }
        Ok(())
    }));

    let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1000.0);
    let line: Vec<String> = times
        .iter()
        .flat_map(|&(wall, cpu)| [ms(wall), ms(cpu)])
        .collect();
    println!("{}", line.join(" "));
}
