// The implicit-GEMM convolution shared by conv2d_gemm.wgsl and conv_transpose2d_gemm.wgsl,
// built for hardware GPUs: C[M, N] = A[M, K] · B[K, N] with M = output channels of a group,
// N = output pixels (of one phase, for the transposed convolution) and K = input channels of the
// group × taps. B is never materialised: its columns are gathered from the input as the K loop
// reaches them, so dilation and padding only change a gather's address and predicate.
//
// A workgroup of GEMM_SM × GEMM_SN invocations computes a GEMM_BM × GEMM_BN tile of C, each
// invocation 8 channels × 8 pixels of it in registers (two vec4s of weights times two vec4s of
// pixels per k). The K loop walks the taps (those of the workgroup's phase) and, within a tap,
// GEMM_BK input channels at a time. Each step stages its A and B tiles in workgroup memory; the
// next step's tiles are loaded from global memory into registers while this step's products are
// computed (double-buffered, one barrier per step). Tiles and sums are `Acc`, converted from
// the stored values as they are loaded: in f16-accumulate both halve, and RDNA's packed math
// does two of the vec4 FMAs' lanes per instruction.
//
// The host prepends GEMM_SM, GEMM_SN and GEMM_BK (8 or 16), one tile configuration per shader,
// and repacks the weights to [groups, kH, kW, C_in/groups padded to 2 · GEMM_BK, C_out/groups
// padded to GEMM_BM], zero-filled, so weight loads need no predicate. The entry file supplies the pixel geometry:
// `tap_walk`, `pixel_origin`, `output_pixel` and `tile_reads_tap`.
//
// No loop inside the K loop: wgpu bounds every WGSL loop with a counter, which keeps the driver
// from unrolling it, so the per-step work is written out, up to the largest configuration's
// counts, behind conditions on constants that the compiler folds.

const GEMM_THREADS: u32 = GEMM_SM * GEMM_SN;
const GEMM_BM: u32 = 8u * GEMM_SM;
const GEMM_BN: u32 = 8u * GEMM_SN;
// An A tile holds GEMM_BK rows (k) of GEMM_BM / 4 vec4s: A_ROWS rows per load round, A_LOADS rounds.
const A_ROWS: u32 = max(1u, GEMM_THREADS / (GEMM_BM / 4u));
const A_LOADS: u32 = GEMM_BK / A_ROWS;                      // 1, 2 or 4
// A B tile holds GEMM_BK rows of GEMM_BN pixels: each invocation gathers B_PIXELS pixels (1 or
// 2) of row t / GEMM_BN of each group of B_ROWS rows, B_LOADS values in all (4, 8 or 16).
const B_PIXELS: u32 = max(1u, GEMM_BN / GEMM_THREADS);
const B_ROWS: u32 = max(1u, GEMM_THREADS / GEMM_BN);
const B_LOADS: u32 = GEMM_BK / B_ROWS * B_PIXELS;

@group(0) @binding(2) var<storage, read> weight: array<vec4<Stored>>;

// Both halves of the double buffer: row k of half `parity` of the A tile (GEMM_BM / 4 vec4s of
// output channels) and of the B tile (GEMM_BN / 4 vec4s of pixels). Where they lie in workgroup
// memory depends on the precision: gemm_tiles_apart.wgsl and gemm_tiles_side_by_side.wgsl.

// A gathered pixel: its sample's input offset, and the input position its first tap reads (far
// outside the input for a pixel that does not exist).
struct PixelOrigin { offset: u32, y: i32, x: i32 }

// A gathered pixel's input offset for the current tap and the invocation's first channel, and
// whether the tap lands inside the input.
struct TapSource { offset: u32, inside: bool }

// Where an output pixel is stored (channel 0), and whether it exists.
struct OutputPixel { offset: u32, valid: bool }

// Which tile a workgroup computes: `n_first` = its first pixel (of its phase's grid), `m_first`
// = its first output channel within `group`, and the phase (0, 0 for the forward convolution).
struct GemmTile { n_first: u32, m_first: u32, group: u32, phase: vec2<u32> }

// The taps a workgroup visits, (ky, kx) = first + i · period while inside the kernel, and how far
// the input position moves per step of i (x and y).
struct TapWalk { first: vec2<u32>, period: vec2<u32>, shift: vec2<i32> }

// The K loop's position: the tap, how far its input position is from the first tap's, and the
// first input channel of the step.
struct Walk { ky: u32, kx: u32, dy: i32, dx: i32, ci_first: u32 }

// What the K loop needs, fixed for the workgroup.
struct Sizes { cig: u32, cig_padded: u32, row: u32, plane: u32, w_group: u32, in_first: u32 }

// The invocation's state, in registers: sums[4·i + q + 8·j] holds channel 4·(i·GEMM_SM + tm) + q
// for pixels 4·(j·GEMM_SN + tn) … + 3, with tm = t / GEMM_SN and tn = t % GEMM_SN.
var<private> sums: array<vec4<Acc>, 16>;
var<private> a_next: array<vec4<Acc>, 4>;
var<private> b_next: array<Acc, 16>;
var<private> b_inside: array<bool, 16>;
var<private> b_channel: u32; // the channel offset of the next input load
var<private> origins: array<PixelOrigin, 2>;
var<private> sources: array<TapSource, 2>;
var<private> t: u32;
var<private> tile: GemmTile;
var<private> taps: TapWalk;
var<private> walk: Walk;
var<private> sizes: Sizes;

fn conv_gemm(invocation: u32, workgroup_tile: GemmTile) {
    t = invocation;
    tile = workgroup_tile;
    taps = tap_walk(tile.phase);
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let plane = p.in_h * p.in_w;
    let cig_padded = (cig + 2u * GEMM_BK - 1u) / (2u * GEMM_BK) * (2u * GEMM_BK);
    let row = (cog + GEMM_BM - 1u) / GEMM_BM * (GEMM_BM / 4u); // vec4s per (tap, input channel)
    // This invocation's weights: vec4 t % (GEMM_BM / 4) of rows t / (GEMM_BM / 4) + A_ROWS·l.
    let w_group = tile.group * p.k_h * p.k_w * cig_padded * row + tile.m_first / 4u + t / (GEMM_BM / 4u) * row + t % (GEMM_BM / 4u);
    // Its inputs: the group's channels from t / GEMM_BN on, pixels t % GEMM_BN (+ GEMM_THREADS).
    let in_first = (tile.group * cig + t / GEMM_BN % B_ROWS) * plane;
    sizes = Sizes(cig, cig_padded, row, plane, w_group, in_first);
    walk = Walk(taps.first.y, taps.first.x, 0, 0, 0u);
    skip_unread_taps();
    origins[0] = pixel_origin(tile.n_first + t % GEMM_BN, tile.phase);
    if (B_PIXELS > 1u) {
        origins[1] = pixel_origin(tile.n_first + t % GEMM_BN + GEMM_THREADS, tile.phase);
    }

    // Each tap takes an even number of steps (the channels are padded to pairs of steps), so the
    // halves alternate with constant parities. Of a tap's P pairs, the inner loop runs the first
    // P - 2, whose steps and the steps they load all lie inside the group's channels (cig >
    // cig_padded - 2 · GEMM_BK), so their loads need no channel predicate. Pair P - 2 loads the
    // first step of the last pair, which may reach past them; the last pair's second step moves
    // on to the next tap. Both are written out, at a third more code than a loop over them
    // (BENCHMARKS.md says what the loops measured).
    if (walking()) {
        find_sources();
        load_step(false);
        loop {
            loop {
                if (walk.ci_first + 4u * GEMM_BK >= sizes.cig_padded) {
                    break;
                }
                step(0u, false, true);
                step(1u, false, true);
            }
            if (walk.ci_first + 2u * GEMM_BK < sizes.cig_padded) {
                step(0u, false, true);
                step(1u, false, false);
            }
            step(0u, false, false);
            step(1u, true, false);
            if (!walking()) {
                break;
            }
        }
    }

    // The fused epilogue.
    let out_plane = p.out_h * p.out_w;
    let tm = t / GEMM_SN;
    let tn = t % GEMM_SN;
    for (var j = 0u; j < 2u; j++) {
        for (var r = 0u; r < 4u; r++) {
            let pixel = output_pixel(tile.n_first + 4u * (j * GEMM_SN + tn) + r, tile.phase);
            if (!pixel.valid) {
                continue;
            }
            for (var i = 0u; i < 2u; i++) {
                for (var q = 0u; q < 4u; q++) {
                    let co_local = tile.m_first + 4u * (i * GEMM_SM + tm) + q;
                    if (co_local < cog) {
                        let co = tile.group * cog + co_local;
                        store(pixel.offset + co * out_plane, sums[4u * i + q + 8u * j][r] + initial_value(co));
                    }
                }
            }
        }
    }
}

// Whether the K loop has taps left.
fn walking() -> bool {
    return walk.ky < p.k_h && walk.kx < p.k_w;
}

fn next_tap() {
    walk.kx += taps.period.x;
    walk.dx += taps.shift.x;
    if (walk.kx >= p.k_w) {
        walk.kx = taps.first.x;
        walk.dx = 0;
        walk.ky += taps.period.y;
        walk.dy += taps.shift.y;
    }
}

// Moves the walk past the taps that no pixel of the tile reads inside the input: their products
// would all be zero. The tile is the workgroup's, so every invocation moves alike.
fn skip_unread_taps() {
    loop {
        if (!walking() || tile_reads_tap(walk.ky, walk.kx)) {
            break;
        }
        next_tap();
    }
}

// One step of the K loop on half `parity` of the double buffer: stage the loaded tiles, load the
// next step's (of the next tap after the last step of a tap), multiply this step's. `next_full`:
// the next step's channels all lie inside the group (a constant at every call).
fn step(parity: u32, last_of_tap: bool, next_full: bool) {
    stage_a(parity, 0u);
    if (A_LOADS > 1u) {
        stage_a(parity, 1u);
    }
    if (A_LOADS > 2u) {
        stage_a(parity, 2u);
        stage_a(parity, 3u);
    }
    stage_b(parity, 0u); stage_b(parity, 1u); stage_b(parity, 2u); stage_b(parity, 3u);
    if (B_LOADS > 4u) {
        stage_b(parity, 4u); stage_b(parity, 5u); stage_b(parity, 6u); stage_b(parity, 7u);
    }
    if (B_LOADS > 8u) {
        stage_b(parity, 8u); stage_b(parity, 9u); stage_b(parity, 10u); stage_b(parity, 11u);
        stage_b(parity, 12u); stage_b(parity, 13u); stage_b(parity, 14u); stage_b(parity, 15u);
    }
    workgroupBarrier();

    if (last_of_tap) {
        walk.ci_first = 0u;
        next_tap();
        skip_unread_taps();
        if (walking()) {
            find_sources();
            load_step(false);
        }
    } else {
        walk.ci_first += GEMM_BK;
        load_step(next_full);
    }

    multiply(parity, 0u); multiply(parity, 1u); multiply(parity, 2u); multiply(parity, 3u);
    multiply(parity, 4u); multiply(parity, 5u); multiply(parity, 6u); multiply(parity, 7u);
    if (GEMM_BK > 8u) {
        multiply(parity, 8u); multiply(parity, 9u); multiply(parity, 10u); multiply(parity, 11u);
        multiply(parity, 12u); multiply(parity, 13u); multiply(parity, 14u); multiply(parity, 15u);
    }
}

// The products of row k of half `parity`.
fn multiply(parity: u32, k: u32) {
    let tm = t / GEMM_SN;
    let tn = t % GEMM_SN;
    let a0 = tile_a(parity, k, tm);
    let a1 = tile_a(parity, k, tm + GEMM_SM);
    let b0 = tile_b(parity, k, tn);
    let b1 = tile_b(parity, k, tn + GEMM_SN);
    sums[0] += a0.x * b0; sums[1] += a0.y * b0; sums[2] += a0.z * b0; sums[3] += a0.w * b0;
    sums[4] += a1.x * b0; sums[5] += a1.y * b0; sums[6] += a1.z * b0; sums[7] += a1.w * b0;
    sums[8] += a0.x * b1; sums[9] += a0.y * b1; sums[10] += a0.z * b1; sums[11] += a0.w * b1;
    sums[12] += a1.x * b1; sums[13] += a1.y * b1; sums[14] += a1.z * b1; sums[15] += a1.w * b1;
}

// Value l of a step is row l · A_ROWS + t / (GEMM_BM / 4) % A_ROWS, vec4 t % (GEMM_BM / 4).
fn stage_a(parity: u32, l: u32) {
    set_tile_a(parity, l, t / (GEMM_BM / 4u) % A_ROWS, t % (GEMM_BM / 4u), a_next[l]);
}

// Value l of a step is row (l / B_PIXELS) · B_ROWS + t / GEMM_BN, pixel t % GEMM_BN +
// GEMM_THREADS · (l % B_PIXELS).
fn stage_b(parity: u32, l: u32) {
    let pixel = t % GEMM_BN + GEMM_THREADS * (l % B_PIXELS);
    let value = select(0.0, b_next[l], b_inside[l]);
    set_tile_b(parity, l / B_PIXELS, t / GEMM_BN % B_ROWS, pixel, value);
}

// The gathered pixels' input offsets for the current tap (any offset inside the input where the
// tap lands outside it: the value is discarded).
fn find_sources() {
    sources[0] = tap_source(origins[0]);
    if (B_PIXELS > 1u) {
        sources[1] = tap_source(origins[1]);
    }
}

fn tap_source(origin: PixelOrigin) -> TapSource {
    let iy = origin.y + walk.dy;
    let ix = origin.x + walk.dx;
    let inside = iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
    return TapSource(select(0u, origin.offset + u32(iy) * p.in_w + u32(ix), inside) + sizes.in_first, inside);
}

// Loads one step's tiles into registers: the weights of input channels ci_first … + GEMM_BK of
// the current tap, and the gathered inputs of the same channels, with whether each exists (not
// past the group's last channel, which `full` rules out, not outside the input). The inputs are
// only selected when staged, so the loads' latency overlaps the products.
fn load_step(full: bool) {
    let tap = walk.ky * p.k_w + walk.kx;
    let w_step = sizes.w_group + (tap * sizes.cig_padded + walk.ci_first) * sizes.row;
    load_a(w_step, 0u);
    if (A_LOADS > 1u) {
        load_a(w_step, 1u);
    }
    if (A_LOADS > 2u) {
        load_a(w_step, 2u);
        load_a(w_step, 3u);
    }
    // The invocation's channels left in the group, counted from its first of the step (negative
    // in a step past the group's last channel), and the offset of the step's first plane.
    let left = i32(sizes.cig) - i32(walk.ci_first + t / GEMM_BN % B_ROWS);
    b_channel = walk.ci_first * sizes.plane;
    load_b(left, full, 0u); load_b(left, full, 1u); load_b(left, full, 2u); load_b(left, full, 3u);
    if (B_LOADS > 4u) {
        load_b(left, full, 4u); load_b(left, full, 5u); load_b(left, full, 6u); load_b(left, full, 7u);
    }
    if (B_LOADS > 8u) {
        load_b(left, full, 8u); load_b(left, full, 9u); load_b(left, full, 10u); load_b(left, full, 11u);
        load_b(left, full, 12u); load_b(left, full, 13u); load_b(left, full, 14u); load_b(left, full, 15u);
    }
}

fn load_a(w_step: u32, l: u32) {
    a_next[l] = vec4<Acc>(weight[w_step + l * A_ROWS * sizes.row]);
}

fn load_b(left: i32, full: bool, l: u32) {
    let source = sources[l % B_PIXELS];
    // A channel past the group's last reads some other value, or zero past the buffer's end
    // (WebGPU keeps every access inside its binding); b_inside discards it.
    b_next[l] = Acc(input[source.offset + b_channel]);
    b_inside[l] = source.inside && (full || i32(l / B_PIXELS * B_ROWS) < left);
    // Row l / B_PIXELS · B_ROWS: the next B_ROWS rows once the pixels of this one are loaded.
    b_channel += select(0u, B_ROWS * sizes.plane, l % B_PIXELS == B_PIXELS - 1u);
}
