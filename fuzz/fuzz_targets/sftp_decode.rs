//! The SFTP packet stream and decoder: arbitrary client bytes, framed and
//! decoded as the dispatcher does (`wharf_sftp::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wharf_sftp::fuzzing::sftp_stream(data);
    wharf_sftp::fuzzing::sftp_packet(data);
});
