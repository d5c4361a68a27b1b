//! The machine a run comes from, as the report names it.

use std::time::SystemTime;

use crate::model::Machine;
use crate::units::rfc3339;

/// This machine: CPU model, cores, kernel release, the date now, and the
/// CPUs the servers and the load are pinned to.
pub fn this_machine(server_cpus: &[usize], client_cpus: &[usize]) -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| cpu_model(&t))
        .unwrap_or_else(|| "unknown".into());
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel,
        date: rfc3339(SystemTime::now()),
        server_cpus: server_cpus.to_vec(),
        client_cpus: client_cpus.to_vec(),
    }
}

/// The first `model name` in the text of `/proc/cpuinfo`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        l.strip_prefix("model name")
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_model_is_read_from_cpuinfo() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(text).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor : 0\n"), None);
        let m = this_machine(&[0], &[1]);
        assert!(m.cores >= 1 && !m.kernel.is_empty());
        assert!(m.date.ends_with('Z') && m.date.len() == 20, "{}", m.date);
    }
}
