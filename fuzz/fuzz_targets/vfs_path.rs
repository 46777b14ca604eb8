//! The virtual path normaliser: two client paths, parsed and joined, must
//! stay normal and under the root (`wharf_vfs::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wharf_vfs::fuzzing::vfs_path(data);
});
