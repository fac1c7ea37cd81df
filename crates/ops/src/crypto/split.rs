//! Secret sharing for Create Split Key and Join Split Key (KMIP 1.4 §2.2.5, 2.1 §2.2.5): the
//! Split Key Methods XOR and Polynomial Sharing GF(2^8).
//!
//! - **XOR**: `parts - 1` random shares, the last one the secret XOR all of them; every part is
//!   needed (threshold = parts).
//! - **Polynomial Sharing GF(2^8)** (Shamir's scheme, [w1979] in the spec): each byte of the
//!   secret is the constant term of a random polynomial of degree `threshold - 1` over GF(2^8);
//!   the share of part `x` (its Key Part Identifier, 1..=255) is the polynomial at `x`; any
//!   `threshold` shares give the secret back by Lagrange interpolation at 0. The field is
//!   GF(2)[x]/(x^8+x^4+x^3+x^2+1), "285" in KMIP 2.1 §2.2.5 (the OASIS cases' shares, e.g.
//!   TC-SJ-3, reconstruct under this polynomial and not under AES's x^8+x^4+x^3+x+1).
//!   Multiplication runs a fixed 8 steps without secret-dependent branches.
//!
//! Polynomial Sharing GF(2^16) and Prime Field are not offered (Feature Not Supported at the
//! operations). The random coefficients come from the same DRBG as new keys
//! (`keygen::symmetric`) and are zeroized.

use zeroize::Zeroizing;

use super::keygen;
use crate::error::{Error, Result};

/// The reduction polynomial of GF(2^8) without its x^8 term (0x11d).
const POLY: u8 = 0x1d;

/// Multiplication in GF(2^8), constant-time (no branch on the operands).
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0u8;
    for _ in 0..8 {
        r ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (POLY & carry);
        b >>= 1;
    }
    r
}

/// The inverse in GF(2^8) of a non-zero element (a^254).
fn inv(a: u8) -> u8 {
    let mut result = 1u8;
    let mut base = a;
    let mut e = 254u8;
    while e > 0 {
        if e & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    result
}

/// The shares of `secret` for the XOR method, `parts` of them.
pub(crate) fn xor_split(secret: &[u8], parts: usize) -> Result<Vec<Zeroizing<Vec<u8>>>> {
    if parts < 2 {
        return Err(Error::InvalidField("Split Key Parts"));
    }
    let mut shares = Vec::with_capacity(parts);
    let mut last = Zeroizing::new(secret.to_vec());
    for _ in 1..parts {
        let share = keygen::symmetric(secret.len())?;
        for (l, s) in last.iter_mut().zip(share.iter()) {
            *l ^= s;
        }
        shares.push(share);
    }
    shares.push(last);
    Ok(shares)
}

/// The secret of XOR shares (all of them).
pub(crate) fn xor_join(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>> {
    let len = same_length(shares)?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    for share in shares {
        for (o, s) in out.iter_mut().zip(share.iter()) {
            *o ^= s;
        }
    }
    Ok(out)
}

/// The shares of `secret` for Polynomial Sharing GF(2^8): `parts` shares, the one of part `x`
/// at index `x - 1`, any `threshold` of which give the secret back.
pub(crate) fn gf256_split(
    secret: &[u8],
    parts: usize,
    threshold: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>> {
    if !(2..=255).contains(&parts) {
        return Err(Error::InvalidField("Split Key Parts"));
    }
    if !(1..=parts).contains(&threshold) {
        return Err(Error::InvalidField("Split Key Threshold"));
    }
    // coefficients[j] holds a_(j+1) for every byte of the secret.
    let mut coefficients = Vec::with_capacity(threshold.saturating_sub(1));
    for _ in 1..threshold {
        coefficients.push(keygen::symmetric(secret.len())?);
    }
    let mut shares = Vec::with_capacity(parts);
    for x in (1..=parts).filter_map(|x| u8::try_from(x).ok()) {
        let mut share = Zeroizing::new(secret.to_vec());
        // Horner from the highest coefficient: ((a_k x + a_(k-1)) x + ...) x + a_0.
        let mut acc = Zeroizing::new(vec![0u8; secret.len()]);
        for c in coefficients.iter().rev() {
            for (a, ci) in acc.iter_mut().zip(c.iter()) {
                *a = mul(*a, x) ^ ci;
            }
        }
        for (s, a) in share.iter_mut().zip(acc.iter()) {
            *s ^= mul(*a, x);
        }
        shares.push(share);
    }
    Ok(shares)
}

/// The secret of Polynomial Sharing GF(2^8) shares given as (Key Part Identifier, share), as
/// many as the threshold or more (all are used), identifiers distinct and non-zero.
pub(crate) fn gf256_join(shares: &[(u8, &[u8])]) -> Result<Zeroizing<Vec<u8>>> {
    let parts: Vec<&[u8]> = shares.iter().map(|(_, s)| *s).collect();
    let len = same_length(&parts)?;
    for (i, (x, _)) in shares.iter().enumerate() {
        if *x == 0 || shares.iter().skip(i + 1).any(|(y, _)| y == x) {
            return Err(Error::CryptographicFailure(
                "split keys with the same Key Part Identifier",
            ));
        }
    }
    let mut out = Zeroizing::new(vec![0u8; len]);
    for (j, (xj, share)) in shares.iter().enumerate() {
        // The Lagrange basis polynomial of x_j at 0: prod x_m / (x_m - x_j), m != j.
        let mut num = 1u8;
        let mut den = 1u8;
        for (m, (xm, _)) in shares.iter().enumerate() {
            if m != j {
                num = mul(num, *xm);
                den = mul(den, xm ^ xj);
            }
        }
        let basis = mul(num, inv(den));
        for (o, s) in out.iter_mut().zip(share.iter()) {
            *o ^= mul(*s, basis);
        }
    }
    Ok(out)
}

fn same_length(shares: &[&[u8]]) -> Result<usize> {
    let len = shares
        .first()
        .map(|s| s.len())
        .ok_or(Error::CryptographicFailure("no split keys"))?;
    if len == 0 || shares.iter().any(|s| s.len() != len) {
        return Err(Error::CryptographicFailure(
            "split keys of different lengths",
        ));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_arithmetic() {
        // 0x11d: x^8 = x^4 + x^3 + x^2 + 1, so 0x80 * 2 = 0x1d.
        assert_eq!(mul(0x80, 2), 0x1d);
        assert_eq!(mul(0x53, 1), 0x53);
        assert_eq!(mul(0, 0x77), 0);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "{a}");
        }
    }

    #[test]
    fn the_oasis_shares_of_tc_sj_3_join_to_its_key() {
        let s = |h: &str| hex::decode(h).unwrap();
        let (s1, s2) = (
            s("66C46A7754F94DE420C7B1A7FFF5EC56"),
            s("CF93D1E2A7E593CD5B8D6247F4E5D49C"),
        );
        let (s3, s4) = (
            s("A855B891F61AD9217240D8EC061E37DA"),
            s("803DBAD55CDD329FAD19D99AE2C5A415"),
        );
        let key = s("0102030405060708090a0b0c0d0e0f10");
        for pair in [
            [(1, &s1), (3, &s3)],
            [(2, &s2), (4, &s4)],
            [(4, &s4), (1, &s1)],
        ] {
            let shares: Vec<(u8, &[u8])> = pair.iter().map(|(x, v)| (*x, v.as_slice())).collect();
            assert_eq!(gf256_join(&shares).unwrap().as_slice(), key.as_slice());
        }
        // One share short of the threshold gives something else.
        assert_ne!(gf256_join(&[(1, &s1)]).unwrap().as_slice(), key.as_slice());
    }

    #[test]
    fn split_then_join_with_any_threshold_subset() {
        let secret = keygen::symmetric(32).unwrap();
        let shares = gf256_split(&secret, 5, 3).unwrap();
        assert_eq!(shares.len(), 5);
        for pick in [[1u8, 2, 3], [5, 3, 1], [2, 4, 5]] {
            let chosen: Vec<(u8, &[u8])> = pick
                .iter()
                .map(|x| (*x, shares[usize::from(*x) - 1].as_slice()))
                .collect();
            assert_eq!(gf256_join(&chosen).unwrap(), secret);
        }
        let two: Vec<(u8, &[u8])> = vec![(1, &shares[0]), (2, &shares[1])];
        assert_ne!(gf256_join(&two).unwrap(), secret);
        assert!(gf256_join(&[(1, &shares[0]), (1, &shares[1])]).is_err());

        let xs = xor_split(&secret, 4).unwrap();
        let all: Vec<&[u8]> = xs.iter().map(|s| s.as_slice()).collect();
        assert_eq!(xor_join(&all).unwrap(), secret);
        assert_ne!(xor_join(&all[..3]).unwrap(), secret);
        assert!(xs.iter().all(|s| s.as_slice() != secret.as_slice()));
    }
}
