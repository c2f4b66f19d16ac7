//! Certificates for tests of TLS clients (a `rediss://` Redis): a CA and a server
//! certificate for 127.0.0.1 it signed, made with the `openssl` command (installed by
//! `cargo xtask setup`). A server certificate signed by a CA, not a self-signed one:
//! webpki refuses a CA certificate used as the server's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes them into `dir`: (CA certificate, server certificate, server key), PEM.
pub fn certificates(dir: &Path) -> [PathBuf; 3] {
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (cargo xtask setup installs it)");
        assert!(ok.success(), "openssl {args:?}");
    };
    let (days, key) = (["-days", "2"], ["-newkey", "rsa:2048", "-nodes"]);
    openssl(
        &[
            &["req", "-x509"][..],
            &key,
            &days,
            &[
                "-subj",
                "/CN=test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &key,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext.cnf");
    openssl(
        &[
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
            ][..],
            &["-CAcreateserial"],
            &days,
            &["-extfile", "ext.cnf", "-out", "server.crt"],
        ]
        .concat(),
    );
    [
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    ]
}
