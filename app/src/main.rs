fn main() -> std::process::ExitCode {
    voronka::cli::main()
}
