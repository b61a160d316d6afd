//! Where this process stands in a distributed job: torchrun's or Slurm's variables.

use crate::error::{Result, TrainError};

/// The port a Slurm job's master listens on when `MASTER_PORT` is unset:
/// `SLURM_PORT_BASE + SLURM_JOB_ID % SLURM_PORT_SPAN` (15000..29999, below Linux's
/// ephemeral ports), so the jobs sharing a node rarely collide.
pub const SLURM_PORT_BASE: u16 = 15000;
/// See [`SLURM_PORT_BASE`].
pub const SLURM_PORT_SPAN: u64 = 15000;

/// This process's place in the job, from the launcher's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Rank on this machine: the GPU this process uses.
    pub local_rank: usize,
    /// Host of rank 0's TCPStore.
    pub master_addr: String,
    /// Port of rank 0's TCPStore; 0 (world size 1 only) picks a free port.
    pub master_port: u16,
}

impl DistEnv {
    /// A job of one process with its store on `127.0.0.1` at a free port: what a run without
    /// a launcher uses when it wants a [`Collective`](super::Collective) anyway.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: 0,
        }
    }

    /// Reads torchrun's `RANK`/`WORLD_SIZE`/`LOCAL_RANK`/`MASTER_ADDR`/`MASTER_PORT`; else
    /// Slurm's `SLURM_PROCID`/`SLURM_NTASKS`/`SLURM_LOCALID` (as `srun` sets them) with
    /// `MASTER_ADDR`, or the first host of `SLURM_STEP_NODELIST` (else
    /// `SLURM_JOB_NODELIST`), and `MASTER_PORT`, or a port derived from `SLURM_JOB_ID`
    /// ([`SLURM_PORT_BASE`]). `None` when neither launcher's variables are set.
    ///
    /// # Errors
    /// A malformed or inconsistent value ([`TrainError::DistEnv`] names the variable).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`DistEnv::from_env`] over any variable lookup (for tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        if get("RANK").is_some() || get("WORLD_SIZE").is_some() {
            let rank = required(&get, "RANK", "WORLD_SIZE")?;
            let world_size = required(&get, "WORLD_SIZE", "RANK")?;
            let local_rank = required(&get, "LOCAL_RANK", "RANK")?;
            let master_addr = get("MASTER_ADDR").ok_or_else(|| missing("MASTER_ADDR", "RANK"))?;
            let master_port =
                port(&get("MASTER_PORT").ok_or_else(|| missing("MASTER_PORT", "RANK"))?)?;
            return Self::checked(
                ["RANK", "WORLD_SIZE", "LOCAL_RANK"],
                rank,
                world_size,
                local_rank,
                master_addr,
                master_port,
            )
            .map(Some);
        }
        if get("SLURM_PROCID").is_none() {
            return Ok(None);
        }
        let rank = required(&get, "SLURM_PROCID", "SLURM_PROCID")?;
        let world_size = match get("SLURM_NTASKS") {
            Some(v) => number("SLURM_NTASKS", &v)?,
            None => required(&get, "SLURM_NPROCS", "SLURM_PROCID")?,
        };
        let local_rank = required(&get, "SLURM_LOCALID", "SLURM_PROCID")?;
        let master_addr = match get("MASTER_ADDR") {
            Some(addr) => addr,
            None => {
                let (var, list) = [
                    "SLURM_STEP_NODELIST",
                    "SLURM_JOB_NODELIST",
                    "SLURM_NODELIST",
                ]
                .into_iter()
                .find_map(|var| get(var).map(|v| (var, v)))
                .ok_or_else(|| missing("MASTER_ADDR (or SLURM_JOB_NODELIST)", "SLURM_PROCID"))?;
                let hosts = expand_nodelist(&list).map_err(|reason| bad(var, &list, &reason))?;
                hosts
                    .into_iter()
                    .next()
                    .ok_or_else(|| bad(var, &list, "no host"))?
            }
        };
        let master_port = match get("MASTER_PORT") {
            Some(v) => port(&v)?,
            None => {
                let job = get("SLURM_JOB_ID")
                    .ok_or_else(|| missing("MASTER_PORT (or SLURM_JOB_ID)", "SLURM_PROCID"))?;
                let id: u64 = number("SLURM_JOB_ID", &job)?;
                // The span keeps the sum below 30000, well inside u16.
                SLURM_PORT_BASE + u16::try_from(id % SLURM_PORT_SPAN).unwrap_or(0)
            }
        };
        Self::checked(
            ["SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"],
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
        )
        .map(Some)
    }

    fn checked(
        names: [&str; 3],
        rank: usize,
        world_size: usize,
        local_rank: usize,
        master_addr: String,
        master_port: u16,
    ) -> Result<Self> {
        let [rank_var, size_var, local_var] = names;
        if world_size == 0 {
            return Err(TrainError::DistEnv {
                var: size_var.into(),
                reason: "must be at least 1".into(),
            });
        }
        if rank >= world_size {
            return Err(TrainError::DistEnv {
                var: rank_var.into(),
                reason: format!("{rank} is not below {size_var}={world_size}"),
            });
        }
        if local_rank >= world_size {
            return Err(TrainError::DistEnv {
                var: local_var.into(),
                reason: format!("{local_rank} is not below {size_var}={world_size}"),
            });
        }
        Ok(Self {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
        })
    }

    /// The GPU this rank uses: `cuda:LOCAL_RANK`, or `cuda:(LOCAL_RANK % count)` when
    /// fewer GPUs are visible (Slurm's `--gpus-per-task=1` leaves each task one, `cuda:0`).
    pub fn cuda_device(&self) -> tch::Device {
        let count = usize::try_from(tch::Cuda::device_count())
            .unwrap_or(0)
            .max(1);
        tch::Device::Cuda(self.local_rank % count)
    }
}

fn missing(var: &str, because: &str) -> TrainError {
    TrainError::DistEnv {
        var: var.into(),
        reason: format!("is not set, but {because} is"),
    }
}

fn bad(var: &str, value: &str, reason: &str) -> TrainError {
    TrainError::DistEnv {
        var: var.into(),
        reason: format!("{value:?}: {reason}"),
    }
}

fn number<T: std::str::FromStr>(var: &str, value: &str) -> Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(var, value, "not a non-negative integer"))
}

fn required(get: &impl Fn(&str) -> Option<String>, var: &str, because: &str) -> Result<usize> {
    let value = get(var).ok_or_else(|| missing(var, because))?;
    number(var, &value)
}

fn port(value: &str) -> Result<u16> {
    match value.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(bad("MASTER_PORT", value, "not a port (1..65535)")),
    }
}

/// Expands a Slurm host list: `node[03-05,7],gpu1` -> `node03 node04 node05 node7 gpu1`.
/// Ranges keep the zero padding of their first bound; a name may hold several bracket
/// groups (`r[1-2]n[1-2]`: all combinations, the last group varying fastest).
///
/// # Errors
/// An unbalanced bracket, an empty or reversed range, or a non-number in a range.
pub fn expand_nodelist(list: &str) -> std::result::Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for name in split_top_level(list)? {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        hosts.extend(expand_name(name)?);
    }
    if hosts.is_empty() {
        return Err("empty host list".into());
    }
    Ok(hosts)
}

/// Splits at commas outside brackets.
fn split_top_level(list: &str) -> std::result::Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ']' at byte {i}"))?;
            }
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '['".into());
    }
    parts.push(&list[start..]);
    Ok(parts)
}

/// One name with zero or more bracket groups.
fn expand_name(name: &str) -> std::result::Result<Vec<String>, String> {
    let Some(open) = name.find('[') else {
        if name.contains(']') {
            return Err(format!("unbalanced ']' in {name:?}"));
        }
        return Ok(vec![name.to_string()]);
    };
    let close = name[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("unbalanced '[' in {name:?}"))?;
    let (prefix, group, rest) = (&name[..open], &name[open + 1..close], &name[close + 1..]);
    let tails = expand_name(rest)?;
    let mut out = Vec::new();
    for item in group.split(',') {
        let item = item.trim();
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        let parse = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("{s:?} in [{group}] is not a number"))
        };
        let (start, end) = (parse(lo)?, parse(hi)?);
        if end < start {
            return Err(format!("range {item:?} in [{group}] runs backwards"));
        }
        if end - start > 1_000_000 {
            return Err(format!("range {item:?} in [{group}] is too long"));
        }
        let width = lo.len();
        for n in start..=end {
            for tail in &tails {
                out.push(format!("{prefix}{n:0width$}{tail}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Result<Option<DistEnv>> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistEnv::from_vars(|name| map.get(name).cloned())
    }

    fn err(vars: &[(&str, &str)]) -> String {
        env(vars).unwrap_err().to_string()
    }

    const TORCHRUN: &[(&str, &str)] = &[
        ("RANK", "5"),
        ("WORLD_SIZE", "16"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "node01"),
        ("MASTER_PORT", "29500"),
    ];

    #[test]
    fn no_launcher_variables_mean_a_single_process() {
        assert_eq!(env(&[]).unwrap(), None);
        assert_eq!(
            env(&[("SLURM_JOB_ID", "7"), ("PATH", "/bin")]).unwrap(),
            None
        );
    }

    #[test]
    fn torchrun_variables_are_read() {
        let e = env(TORCHRUN).unwrap().unwrap();
        assert_eq!(
            e,
            DistEnv {
                rank: 5,
                world_size: 16,
                local_rank: 1,
                master_addr: "node01".into(),
                master_port: 29500
            }
        );
    }

    #[test]
    fn torchrun_wins_over_slurm() {
        let mut vars = TORCHRUN.to_vec();
        vars.extend([
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
        ]);
        assert_eq!(env(&vars).unwrap().unwrap().rank, 5);
    }

    #[test]
    fn torchrun_errors_name_the_variable() {
        let with = |k: &str, v: &str| {
            let mut vars: Vec<_> = TORCHRUN.iter().filter(|(n, _)| *n != k).copied().collect();
            if !v.is_empty() {
                vars.push((k, v));
            }
            err(&vars)
        };
        assert!(
            with("RANK", "16").contains("RANK: 16 is not below WORLD_SIZE=16"),
            "{}",
            with("RANK", "16")
        );
        assert!(with("RANK", "x").contains("RANK: \"x\""));
        assert!(with("WORLD_SIZE", "").contains("WORLD_SIZE: is not set"));
        assert!(with("WORLD_SIZE", "0").contains("WORLD_SIZE: must be at least 1"));
        assert!(with("LOCAL_RANK", "").contains("LOCAL_RANK: is not set"));
        assert!(with("LOCAL_RANK", "16").contains("LOCAL_RANK: 16 is not below WORLD_SIZE=16"));
        assert!(with("MASTER_ADDR", "").contains("MASTER_ADDR: is not set"));
        assert!(with("MASTER_PORT", "").contains("MASTER_PORT: is not set"));
        assert!(with("MASTER_PORT", "70000").contains("MASTER_PORT: \"70000\": not a port"));
        assert!(with("MASTER_PORT", "0").contains("MASTER_PORT"));
    }

    #[test]
    fn slurm_takes_the_first_node_and_a_port_from_the_job_id() {
        let e = env(&[
            ("SLURM_PROCID", "9"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[007-008],cpu1"),
            ("SLURM_JOB_ID", "123456"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((e.rank, e.world_size, e.local_rank), (9, 16, 1));
        assert_eq!(e.master_addr, "gpu007");
        assert_eq!(e.master_port, 15000 + (123456 % 15000) as u16);
    }

    #[test]
    fn slurm_prefers_master_variables_and_the_step_nodelist() {
        let base = [
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_JOB_NODELIST", "a[1-4]"),
            ("SLURM_STEP_NODELIST", "a[3-4]"),
            ("SLURM_JOB_ID", "1"),
        ];
        let e = env(&base).unwrap().unwrap();
        assert_eq!((e.master_addr.as_str(), e.master_port), ("a3", 15001));
        let mut vars = base.to_vec();
        vars.extend([("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "2222")]);
        let e = env(&vars).unwrap().unwrap();
        assert_eq!((e.master_addr.as_str(), e.master_port), ("10.0.0.1", 2222));
    }

    #[test]
    fn slurm_errors_name_the_variable() {
        let e = err(&[("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0")]);
        assert!(e.contains("SLURM_NPROCS: is not set"), "{e}");
        let e = err(&[
            ("SLURM_PROCID", "2"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
        ]);
        assert!(
            e.contains("SLURM_PROCID: 2 is not below SLURM_NTASKS=2"),
            "{e}"
        );
        let e = err(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_JOB_NODELIST", "n[1-"),
            ("SLURM_JOB_ID", "1"),
        ]);
        assert!(
            e.contains("SLURM_JOB_NODELIST: \"n[1-\": unbalanced '['"),
            "{e}"
        );
        let e = err(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_JOB_NODELIST", "n1"),
        ]);
        assert!(
            e.contains("MASTER_PORT (or SLURM_JOB_ID): is not set"),
            "{e}"
        );
        let e = err(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
        ]);
        assert!(e.contains("MASTER_ADDR (or SLURM_JOB_NODELIST)"), "{e}");
    }

    #[test]
    fn nodelists_expand_ranges_lists_and_padding() {
        assert_eq!(
            expand_nodelist("node[03-05,7],gpu1").unwrap(),
            ["node03", "node04", "node05", "node7", "gpu1"]
        );
        assert_eq!(expand_nodelist("single").unwrap(), ["single"]);
        assert_eq!(
            expand_nodelist("r[1-2]n[08-09]-ib").unwrap(),
            ["r1n08-ib", "r1n09-ib", "r2n08-ib", "r2n09-ib"]
        );
        assert_eq!(expand_nodelist("x[9-10]").unwrap(), ["x9", "x10"]);
        assert_eq!(
            expand_nodelist("a[1],b[2-3],c").unwrap(),
            ["a1", "b2", "b3", "c"]
        );
    }

    #[test]
    fn malformed_nodelists_are_errors() {
        for bad in ["", "n[1-", "n1]", "n[a-b]", "n[5-3]", "n[]", "n[1-2],m[x]"] {
            assert!(expand_nodelist(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
