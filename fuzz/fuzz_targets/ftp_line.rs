//! The FTP command line parser: arbitrary control connection bytes, cut
//! into lines, cleaned and split (`wharf_ftp::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wharf_ftp::fuzzing::ftp_lines(data);
});
