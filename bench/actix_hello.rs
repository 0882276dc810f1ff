//! The machine's HTTP ceiling, measured beside the server: a plain actix-web hello-world with
//! as many workers as `serve` starts, on a port of its own. Issue 2 states its GET target
//! against one (158k requests/s where it was written); `bench/run.sh` measures this one in
//! the same run, so the GET figure can be read against what the machine gives any server.
//!
//!   cargo run --release --example actix_hello     # prints `listening on http://127.0.0.1:PORT`

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let server = HttpServer::new(|| {
        App::new().route(
            "/",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        )
    })
    .bind("127.0.0.1:0")?;
    for addr in server.addrs() {
        println!("listening on http://{addr}");
    }
    server.run().await
}
