// The register tile shared by the tiled convolution kernels (forward and transposed): CO_TILE
// output channels of one pixel per invocation, on weights the host repacked to
// [groups, kH, kW, C_in/groups, C_out/groups padded to CO_TILE], so that the CO_TILE weights of
// one (tap, input channel) are four vec4s in a row.

const CO_TILE: u32 = 16u;

@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;

// Adds one tap's contribution over all `cig` input channels: the input starts at `x_at` and
// steps by `plane`, the weights start at `w_at` and step by `row` vec4s.
fn accumulate_tap(acc: ptr<function, array<vec4<f32>, 4>>, x_first: u32, w_first: u32, cig: u32, plane: u32, row: u32) {
    var x_at = x_first;
    var w_at = w_first;
    for (var ci = 0u; ci < cig; ci++) {
        let x = input[x_at];
        (*acc)[0] += x * weight[w_at];
        (*acc)[1] += x * weight[w_at + 1u];
        (*acc)[2] += x * weight[w_at + 2u];
        (*acc)[3] += x * weight[w_at + 3u];
        x_at += plane;
        w_at += row;
    }
}

// Stores the tile of output pixel `pixel` (oy·OW + ox) of sample n, channels co_first… of
// `group`, through the fused epilogue.
fn store_tile(acc: array<vec4<f32>, 4>, n: u32, group: u32, co_first: u32, pixel: u32) {
    let cog = p.c_out / p.groups;
    let out_plane = p.out_h * p.out_w;
    for (var j = 0u; j < CO_TILE; j++) {
        let co_local = co_first + j;
        if (co_local >= cog) {
            break;
        }
        let co = group * cog + co_local;
        store((n * p.c_out + co) * out_plane + pixel, acc[j / 4u][j % 4u] + initial_value(co));
    }
}
