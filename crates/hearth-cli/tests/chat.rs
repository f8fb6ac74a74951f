//! `hearth chat` driven like a person would: a message, Ctrl-C in the middle
//! of the answer, `/reset`, `/exit`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::gemma;

#[test]
fn ctrl_c_stops_the_answer_and_the_session_goes_on() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["chat", "-m"])
        .arg(gemma())
        .args(["--temp", "0", "-n", "4000", "-c", "4096", "--ignore-eos"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str| -> bool {
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) {
            if line.contains(needle) {
                return true;
            }
        }
        false
    };
    // The banner comes once the model is loaded and Ctrl-C is handled.
    assert!(wait_for("/reset"), "no banner");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "Tell me a very long story about a lighthouse.").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    // 4000 tokens would take far longer than this (decode runs at ~150 tokens/s here): the
    // answer was stopped.
    assert!(wait_for("(stopped)"), "Ctrl-C did not stop the answer");
    writeln!(stdin, "/reset").unwrap();
    stdin.flush().unwrap();
    assert!(wait_for("(conversation reset)"), "/reset not acknowledged");
    writeln!(stdin, "/exit").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "chat exited with {status}");
}
