// Rust std only: TcpStream::connect("HOST:PORT") (getaddrinfo + connect through libc), then a
// hand-written HTTP/1.0 GET carrying the target's MATRIX_GREETING. Usage: matrix-rs HOST:PORT /rust
use std::env;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn main() {
    let args: Vec<String> = env::args().collect();
    let greeting = env::var("MATRIX_GREETING").unwrap_or_else(|_| "unset".to_string());
    let mut s = match TcpStream::connect(args[1].as_str()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("connect {}: {}", args[1], e);
            std::process::exit(3);
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {} HTTP/1.0\r\nHost: {}\r\nX-Greeting: {}\r\n\r\n", args[2], args[1], greeting).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap_or("?");
    let body = out.splitn(2, "\r\n\r\n").nth(1).unwrap_or("").trim();
    println!("{} {}", status, body);
}
