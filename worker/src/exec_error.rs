//! Why a job binary cannot be executed on this worker, said plainly: a binary built for
//! another architecture (`ENOEXEC`), or one whose loader or script interpreter is missing
//! here (`ENOENT` for a file that exists: a glibc binary on a musl or older system, a
//! script's `#!` naming a missing program). These fail the task for good
//! ([`ErrorKind::InvalidJob`](gristmill::error::ErrorKind::InvalidJob)): another attempt
//! on a worker of the same kind would fail the same way.

use std::io::Read;
use std::path::Path;

/// The reason `binary` cannot run here, if `error` (from spawning it) is permanent;
/// `None` for errors another attempt may not meet (no memory, too many files, text busy).
pub fn diagnose(binary: &Path, error: &std::io::Error) -> Option<String> {
    let head = read_head(binary);
    let shown = binary.display();
    match error.raw_os_error()? {
        libc::ENOEXEC => Some(match elf_machine(&head) {
            Some(machine) => format!(
                "the job binary {shown} is built for {machine}; this worker runs {}: build the job for \
                 the workers' target (e.g. --target {}-unknown-linux-musl) and ship it with {}",
                std::env::consts::ARCH,
                std::env::consts::ARCH,
                gristmill::cluster::submit::JOB_BINARY_ENV
            ),
            None => format!("the job binary {shown} is not an executable this worker can run ({error})"),
        }),
        libc::ENOENT if binary.exists() => Some(match (script_interpreter(&head), elf_interpreter(&head)) {
            (Some(interpreter), _) => {
                format!(
                    "the job binary {shown} is a script whose interpreter {interpreter} is missing on this worker"
                )
            }
            (None, Some(loader)) => format!(
                "the job binary {shown} needs the dynamic loader {loader}, which this worker lacks (a binary \
                 built for another libc or distribution): build it static (--target {}-unknown-linux-musl) or on \
                 the workers' system",
                std::env::consts::ARCH
            ),
            (None, None) => {
                format!("the job binary {shown} cannot be started: a file it needs is missing ({error})")
            }
        }),
        libc::EACCES => Some(format!("the job binary {shown} may not be executed here ({error})")),
        _ => None,
    }
}

/// The first 4 KiB of the file (the ELF header and program headers of any real binary).
fn read_head(path: &Path) -> Vec<u8> {
    let mut head = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(4096).read_to_end(&mut head);
    }
    head
}

/// The architecture an ELF file is built for, by `e_machine`.
fn elf_machine(head: &[u8]) -> Option<String> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let machine = read_u16(head, 18, head[5] == 2)?;
    let name = match machine {
        3 => "x86 (32-bit)",
        0x3e => "x86_64",
        0x28 => "arm (32-bit)",
        0xb7 => "aarch64",
        0xf3 => "riscv",
        0x14 => "powerpc",
        0x15 => "powerpc64",
        0x16 => "s390x",
        0x102 => "loongarch",
        other => return Some(format!("an unknown machine (ELF e_machine {other:#x})")),
    };
    Some(name.to_owned())
}

/// The `PT_INTERP` path of a 64-bit ELF file (its dynamic loader).
fn elf_interpreter(head: &[u8]) -> Option<String> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 {
        return None;
    }
    let big = head[5] == 2;
    let phoff = read_u64(head, 32, big)? as usize;
    let (size, count) = (read_u16(head, 54, big)? as usize, read_u16(head, 56, big)? as usize);
    (0..count).find_map(|i| {
        let at = phoff + i * size;
        const PT_INTERP: u32 = 3;
        if read_u32(head, at, big)? != PT_INTERP {
            return None;
        }
        let (offset, len) = (read_u64(head, at + 8, big)? as usize, read_u64(head, at + 32, big)? as usize);
        let path = head.get(offset..offset + len)?;
        Some(String::from_utf8_lossy(path).trim_end_matches('\0').to_owned())
    })
}

/// The program a `#!` line names.
fn script_interpreter(head: &[u8]) -> Option<String> {
    let line = head.strip_prefix(b"#!")?.split(|&b| b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    line.split_whitespace().next().map(str::to_owned)
}

fn read_u16(b: &[u8], at: usize, big: bool) -> Option<u16> {
    let bytes: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if big { u16::from_be_bytes(bytes) } else { u16::from_le_bytes(bytes) })
}

fn read_u32(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big { u32::from_be_bytes(bytes) } else { u32::from_le_bytes(bytes) })
}

fn read_u64(b: &[u8], at: usize, big: bool) -> Option<u64> {
    let bytes: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(if big { u64::from_be_bytes(bytes) } else { u64::from_le_bytes(bytes) })
}

/// Test binaries that cannot run on any Linux worker of this machine's kind.
#[cfg(test)]
pub mod foreign {
    /// A 64-bit little-endian ELF executable header for `machine` (0xb7: aarch64) with one
    /// `PT_INTERP` program header naming `interpreter`.
    pub fn elf(machine: u16, interpreter: &str) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        (elf[4], elf[5], elf[6]) = (2, 1, 1); // 64-bit, little-endian, version 1
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[18..20].copy_from_slice(&machine.to_le_bytes());
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let path = format!("{interpreter}\0");
        let offset = elf.len() as u64;
        elf[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        elf[64 + 8..64 + 16].copy_from_slice(&offset.to_le_bytes());
        elf[64 + 32..64 + 40].copy_from_slice(&(path.len() as u64).to_le_bytes());
        elf[64 + 40..64 + 48].copy_from_slice(&(path.len() as u64).to_le_bytes());
        elf.extend_from_slice(path.as_bytes());
        elf
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Spawns `bytes` written as an executable and returns the diagnosis of the failure.
    fn diagnosis_of(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job");
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // (Retried while another test thread's fork still holds the file open for writing.)
        for _ in 0..100 {
            match std::process::Command::new(&path).spawn() {
                Ok(_) => panic!("the foreign binary started"),
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => return diagnose(&path, &e).unwrap_or_else(|| panic!("not diagnosed: {e}")),
            }
        }
        panic!("the file stayed busy")
    }

    #[test]
    fn a_binary_for_another_architecture_is_named_with_both_architectures() {
        let machine = if std::env::consts::ARCH == "aarch64" { 0x3e } else { 0xb7 };
        let message = diagnosis_of(&foreign::elf(machine, "/lib/ld-linux-aarch64.so.1"));
        let foreign = if machine == 0xb7 { "aarch64" } else { "x86_64" };
        assert!(message.contains(&format!("built for {foreign}")), "{message}");
        assert!(message.contains(&format!("this worker runs {}", std::env::consts::ARCH)), "{message}");
    }

    #[test]
    fn a_missing_loader_or_interpreter_is_named() {
        let native = if std::env::consts::ARCH == "aarch64" { 0xb7 } else { 0x3e };
        let message = diagnosis_of(&foreign::elf(native, "/lib/gristmill-missing-loader.so.2"));
        assert!(message.contains("needs the dynamic loader /lib/gristmill-missing-loader.so.2"), "{message}");
        let message = diagnosis_of(b"#!/usr/bin/gristmill-missing-python3\nprint(1)\n");
        assert!(message.contains("interpreter /usr/bin/gristmill-missing-python3 is missing"), "{message}");
    }

    #[test]
    fn transient_spawn_errors_are_not_diagnosed() {
        let busy = std::io::Error::from_raw_os_error(libc::EAGAIN);
        assert_eq!(diagnose(Path::new("/bin/sh"), &busy), None);
    }
}
