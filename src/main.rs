//! The `midge` broker binary: everything lives in the library; see `cli`.

// Heap accounting for `memory_limit` and `$SYS/broker/heap/current`.
#[global_allocator]
static ALLOC: midge::memory::CountingAlloc = midge::memory::CountingAlloc;

fn main() {
    std::process::exit(midge::cli::main());
}
