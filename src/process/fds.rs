//! Descriptors handed across `exec` (a live re-exec of corrald): the close-on-exec flag
//! that decides whether one survives.

use std::io;
use std::os::fd::AsFd;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

/// Sets (`true`) or clears (`false`) `FD_CLOEXEC` on `fd`.
pub fn set_cloexec(fd: impl AsFd, cloexec: bool) -> io::Result<()> {
    let flags = FdFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFD).map_err(io::Error::from)?);
    let wanted = if cloexec {
        flags | FdFlag::FD_CLOEXEC
    } else {
        flags - FdFlag::FD_CLOEXEC
    };
    fcntl(&fd, FcntlArg::F_SETFD(wanted)).map_err(io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_set_and_cleared() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let flag = |f: &std::fs::File| {
            FdFlag::from_bits_truncate(fcntl(f, FcntlArg::F_GETFD).unwrap())
                .contains(FdFlag::FD_CLOEXEC)
        };
        assert!(flag(&file), "std opens with close-on-exec");
        set_cloexec(&file, false).unwrap();
        assert!(!flag(&file));
        set_cloexec(&file, true).unwrap();
        assert!(flag(&file));
    }
}
