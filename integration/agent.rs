//! The node agent through the real binary, outside a VM: it must refuse to act anywhere but
//! as `/init` of drover's initramfs. (The full boot is the lab test
//! `agent::qemu_tests::ram_root_boots_in_qemu`, run with `cargo test --lib -- --ignored`.)

use std::process::Command;

#[test]
fn agent_refuses_outside_its_initramfs() {
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .arg("agent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runs only as /init (PID 1) of drover's initramfs"),
        "{err}"
    );
}

/// PID 1 of a new PID namespace on the host's root (like a container's init) is not the agent.
#[test]
fn pid_1_on_a_real_root_is_not_the_agent() {
    let out = match Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            env!("CARGO_BIN_EXE_drover"),
            "agent",
        ])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: unshare: {e}");
            return;
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("unshare failed") || err.contains("Operation not permitted") {
        eprintln!("skipped: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("refusing to mount and switch root"), "{err}");
}
