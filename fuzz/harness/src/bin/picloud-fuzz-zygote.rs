//! A host binary for the pool's zygote, as `picloud` is one: the replay test
//! of the `pool` target points its pool here.

#[global_allocator]
static ALLOC: executor_core::heap::CountingAllocator =
    executor_core::heap::CountingAllocator::new();

fn main() {
    sandbox::run_zygote_if_requested();
    eprintln!("picloud-fuzz-zygote only runs as a pool's zygote");
    std::process::exit(2);
}
