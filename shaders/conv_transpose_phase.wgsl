// Shared by the transposed kernels (conv_transpose2d_tiled.wgsl explains the phase
// decomposition).

// The input index that tap k reaches output o from, (o + pad − k·dil) / stride, and whether it
// exists (the caller has checked that the division is exact).
struct Source { index: u32, inside: bool }

fn source_of(o: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> Source {
    let t = i32(o + pad) - i32(k * dil);
    let i = t / i32(stride);
    return Source(u32(max(i, 0)), t >= 0 && i < i32(size));
}

// The taps of one axis that reach output position o: tap k does when o + pad − k·dil is a
// non-negative multiple of the stride, i.e. when k·dil ≡ o + pad (mod stride). That repeats with
// period stride / gcd(stride, dil), so the taps are first, first + period, … (none when no k in
// the first period qualifies: then first = k_size). Visiting only those skips the taps of other
// phases instead of testing each one: a kernel of 2f taps at stride f visits 2 per axis.
struct Taps { first: u32, period: u32 }

fn phase_taps(o: u32, stride: u32, pad: u32, dil: u32, k_size: u32) -> Taps {
    var period = 1u;
    while ((period * dil) % stride != 0u) {
        period++;
    }
    let phase = (o + pad) % stride;
    var first = 0u;
    while (first < period && (first * dil) % stride != phase) {
        first++;
    }
    return Taps(select(k_size, first, first < period), period);
}
