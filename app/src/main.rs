fn main() -> std::process::ExitCode {
    limit_malloc_retention();
    voronka::cli::main()
}

/// Password hashing allocates 19 MiB per hash. glibc raises its mmap threshold after such blocks
/// are freed, then serves the next ones from its arenas and never gives them back: a burst of
/// sign-ins would leave hundreds of MB resident. A fixed threshold keeps large blocks mmapped,
/// so they are returned to the system when freed.
fn limit_malloc_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; it is called once, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
