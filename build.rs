// sqlx::migrate! embeds the migrations at compile time but cannot tell cargo to watch the
// folder on a stable compiler: without this, a new migration file leaves an old build in
// place that does not know it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
