// The register tile shared by the tiled convolution kernels (forward and transposed): each
// invocation computes PIXEL_TILE neighbouring output pixels of one row (neighbours in the
// kernel's own pixel grid) for CO_TILE output channels of one group, so every weight it fetches
// serves four pixels and every input value it loads serves 32 channels. The host repacks the
// weights to [groups, kH, kW, C_in/groups, C_out/groups padded to CO_TILE], so that the CO_TILE
// weights of one (tap, input channel) are eight vec4s in a row; how they are fetched is the
// job of `tap_weights`, in conv_weights_*.wgsl (one of which is part of every tiled shader).
//
// Every invocation runs every loop trip, even one whose pixels lie outside the input or the
// output: such a pixel reads a valid address, is scaled by zero, and is not stored. The
// subgroup version of `tap_weights` needs all invocations of a subgroup to take part.

// Invocations per workgroup: the size the host dispatches with (`Shader::workgroup_size`).
override WORKGROUP_SIZE: u32 = 64u;

const CO_TILE: u32 = 32u;
const PIXEL_TILE: u32 = 4u;

@group(0) @binding(2) var<storage, read> weight: array<vec4<Stored>>;

// The CO_TILE weights of one (tap, input channel), as `tap_weights` returns them.
struct TapWeights { w0: vec4<Acc>, w1: vec4<Acc>, w2: vec4<Acc>, w3: vec4<Acc>, w4: vec4<Acc>, w5: vec4<Acc>, w6: vec4<Acc>, w7: vec4<Acc> }

// The CO_TILE sums of one pixel.
alias PixelSums = array<vec4<Acc>, 8>;

// The sums of the PIXEL_TILE pixels. Plain fields and constant indices only: the tile must stay
// in registers (a loop over pixels with a variable index can put it in memory).
struct Tile { p0: PixelSums, p1: PixelSums, p2: PixelSums, p3: PixelSums }

// The pixels of a workgroup's quads (PIXEL_TILE neighbours of a row each): `count` consecutive
// quads from quad `first` of the batch's h × w grids, `quads_per_row` quads a row.
fn quad_pixels(first: u32, count: u32, h: u32, w: u32, quads_per_row: u32) -> PixelRect {
    let r = pixel_rect(first, count, h, quads_per_row);
    return PixelRect(r.y0, r.y1, r.x0 * PIXEL_TILE, min(r.x1 * PIXEL_TILE + PIXEL_TILE - 1u, w - 1u));
}

fn add_products(sums: ptr<function, PixelSums>, x: Acc, w: TapWeights) {
    (*sums)[0] += x * w.w0; (*sums)[1] += x * w.w1; (*sums)[2] += x * w.w2; (*sums)[3] += x * w.w3;
    (*sums)[4] += x * w.w4; (*sums)[5] += x * w.w5; (*sums)[6] += x * w.w6; (*sums)[7] += x * w.w7;
}

// Adds one tap's contribution over all `cig` input channels. The four pixels' inputs start at
// `at` and step by `plane`, each scaled by `scale` (0 for a pixel outside the input); the weights
// start at `w_first` and step by `row` vec4s. `lane` is the invocation's subgroup lane.
fn accumulate_tap(tile: ptr<function, Tile>, at: vec4<u32>, scale: vec4<Acc>, w_first: u32, cig: u32, plane: u32, row: u32, lane: u32) {
    // Each pixel's sums in a local variable of its own: naga 30 cannot pass a pointer to part
    // of a variable (`&(*tile).p0`) to a function once override constants are applied.
    var s0 = (*tile).p0;
    var s1 = (*tile).p1;
    var s2 = (*tile).p2;
    var s3 = (*tile).p3;
    var offset = 0u;
    var w_at = w_first;
    for (var ci = 0u; ci < cig; ci++) {
        let x = vec4<Acc>(vec4<Stored>(input[at.x + offset], input[at.y + offset], input[at.z + offset], input[at.w + offset])) * scale;
        let w = tap_weights(w_at, lane);
        add_products(&s0, x.x, w);
        add_products(&s1, x.y, w);
        add_products(&s2, x.z, w);
        add_products(&s3, x.w, w);
        offset += plane;
        w_at += row;
    }
    *tile = Tile(s0, s1, s2, s3);
}

// Stores one pixel's sums (output pixel `pixel` = oy·OW + ox of sample n, channels co_first… of
// `group`) through the fused epilogue.
fn store_pixel(sums: PixelSums, n: u32, group: u32, co_first: u32, pixel: u32) {
    let cog = p.c_out / p.groups;
    let out_plane = p.out_h * p.out_w;
    for (var j = 0u; j < CO_TILE; j++) {
        let co_local = co_first + j;
        if (co_local >= cog) {
            break;
        }
        let co = group * cog + co_local;
        store((n * p.c_out + co) * out_plane + pixel, sums[j / 4u][j % 4u] + initial_value(co));
    }
}

// Stores the tile: its pixels are `first` + k·`step` (k = 0…3), those with `valid` set.
fn store_tile(tile: Tile, n: u32, group: u32, co_first: u32, first: u32, step: u32, valid: vec4<bool>) {
    if (valid.x) { store_pixel(tile.p0, n, group, co_first, first); }
    if (valid.y) { store_pixel(tile.p1, n, group, co_first, first + step); }
    if (valid.z) { store_pixel(tile.p2, n, group, co_first, first + 2u * step); }
    if (valid.w) { store_pixel(tile.p3, n, group, co_first, first + 3u * step); }
}
