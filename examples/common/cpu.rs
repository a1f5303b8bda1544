/// CPU time of the calling thread in nanoseconds, from /proc/thread-self/schedstat, so other
/// load on the machine does not inflate the figures. The kernel advances it at scheduler
/// ticks: read it around many rounds, not one.
pub fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
