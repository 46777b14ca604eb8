//! Smoke runs of the fuzz targets (`fuzz/`) inside the test suite.

/// Calls `each` with `rounds` inputs made from `seeds`: each seed in turn,
/// with up to `edits` edits at generated places (a byte inserted, a bit
/// flipped, or the rest cut off). Inserted bytes come from `alphabet`, or
/// are any byte when it is empty. The generator is fixed (xorshift), so a
/// failure repeats.
pub fn mutated_inputs(
    seeds: &[&[u8]],
    rounds: usize,
    edits: u64,
    alphabet: &[u8],
    mut each: impl FnMut(&[u8]),
) {
    assert!(!seeds.is_empty(), "no seeds");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..rounds {
        let mut input = seeds[round % seeds.len()].to_vec();
        for _ in 0..(next() % (edits + 1)) {
            let at = (next() as usize) % (input.len() + 1);
            match next() % 3 {
                0 => {
                    let byte = match alphabet {
                        [] => next() as u8,
                        some => some[(next() as usize) % some.len()],
                    };
                    input.insert(at, byte);
                }
                1 if at < input.len() => input[at] ^= 1 << (next() % 8),
                _ => input.truncate(at),
            }
        }
        each(&input);
    }
}
