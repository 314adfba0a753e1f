//! Parsers of flag values shared by the subcommands.

use atrous::Hw;

/// An image size: a pair as every pair flag spells it ([`Hw`]'s `N`, `HxW` or `H,W`), both sides
/// at least 1.
pub fn parse_size(s: &str) -> Result<Hw, String> {
    let size = s.parse::<Hw>()?;
    if size.h == 0 || size.w == 0 {
        return Err(format!("'{s}' is not a size: expected integers of at least 1 as {}", Hw::FORMS));
    }
    Ok(size)
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
