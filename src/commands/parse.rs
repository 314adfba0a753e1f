//! Parsers of flag values shared by the subcommands.

use atrous::Hw;

/// Parses `"HxW"` or `"N"` (square).
pub fn parse_size(s: &str) -> Result<Hw, String> {
    let parse = |v: &str| v.trim().parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(|| format!("'{s}' is not a size: expected HxW or N, e.g. 513x513"));
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok(Hw::new(parse(h)?, parse(w)?)),
        None => Ok(Hw::square(parse(s)?)),
    }
}

/// A comma-separated list of rates, e.g. `1,2,4`.
#[derive(Clone, Debug)]
pub struct Rates(pub Vec<usize>);

impl std::str::FromStr for Rates {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(|v| v.trim().parse::<usize>().map_err(|_| format!("'{s}' is not a comma-separated list of integers")))
            .collect::<Result<_, _>>()
            .map(Rates)
    }
}
