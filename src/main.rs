fn main() -> std::process::ExitCode {
    dgrid_worker::cli::main()
}
