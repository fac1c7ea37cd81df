//! Symmetric encryption and decryption with OpenSSL's EVP ciphers: AES (ECB, CBC with or
//! without PKCS#5 padding, CTR, GCM), ChaCha20 and ChaCha20-Poly1305.
//!
//! OpenSSL is used because every parameter is a run-time value there: GCM takes IVs of any
//! length (the OASIS cases use 8, 12 and 60 bytes) and tags of 12..16 bytes, ChaCha20 takes the
//! 8-byte (original) and 12-byte (RFC 8439) nonces.
//!
//! [`run`] is a pure function of the whole input; the streaming form of Encrypt/Decrypt (Init
//! Indicator, Correlation Value, Final Indicator) keeps a [`Running`] cipher between its
//! requests (see `crate::streams`).

use kmipd_proto::enums::{
    block_cipher_mode as bcm, cryptographic_algorithm as alg, padding_method,
};
use openssl::cipher_ctx::CipherCtx;
use openssl::symm::Cipher;
use zeroize::Zeroizing;

use super::ossl;
use super::params::Params;
use crate::error::{Error, Result};

/// Encrypt or decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Encrypt.
    Encrypt,
    /// Decrypt.
    Decrypt,
}

/// The cipher families this module handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// AES-ECB.
    Ecb,
    /// AES-CBC.
    Cbc,
    /// AES-CTR.
    Ctr,
    /// AES-GCM.
    Gcm,
    /// ChaCha20.
    ChaCha20,
    /// ChaCha20-Poly1305.
    ChaChaPoly,
    /// Triple DES (EDE, three keys) in ECB mode.
    Des3Ecb,
    /// Triple DES (EDE, three keys) in CBC mode.
    Des3Cbc,
}

impl Kind {
    /// True for the authenticated modes (a tag is produced and checked).
    pub(crate) fn aead(self) -> bool {
        matches!(self, Kind::Gcm | Kind::ChaChaPoly)
    }

    /// The IV length the server generates when the client sends none (0: no IV).
    fn default_iv_len(self) -> usize {
        match self {
            Kind::Ecb | Kind::Des3Ecb => 0,
            Kind::Des3Cbc => 8,
            Kind::Cbc | Kind::Ctr => 16,
            Kind::Gcm | Kind::ChaCha20 | Kind::ChaChaPoly => 12,
        }
    }
}

/// The cipher for a key algorithm, key length and the parameters' Block Cipher Mode.
pub(crate) fn select(algorithm: u32, key_len: usize, p: &Params) -> Result<(Kind, Cipher)> {
    match algorithm {
        alg::AES => {
            let mode = p
                .block_cipher_mode
                .ok_or(Error::BadCryptographicParameters("no Block Cipher Mode"))?;
            let kind = match mode {
                bcm::ECB => Kind::Ecb,
                bcm::CBC => Kind::Cbc,
                bcm::CTR => Kind::Ctr,
                bcm::GCM => Kind::Gcm,
                _ => return Err(Error::FeatureNotSupported("this Block Cipher Mode")),
            };
            let cipher = match (kind, key_len) {
                (Kind::Ecb, 16) => Cipher::aes_128_ecb(),
                (Kind::Ecb, 24) => Cipher::aes_192_ecb(),
                (Kind::Ecb, 32) => Cipher::aes_256_ecb(),
                (Kind::Cbc, 16) => Cipher::aes_128_cbc(),
                (Kind::Cbc, 24) => Cipher::aes_192_cbc(),
                (Kind::Cbc, 32) => Cipher::aes_256_cbc(),
                (Kind::Ctr, 16) => Cipher::aes_128_ctr(),
                (Kind::Ctr, 24) => Cipher::aes_192_ctr(),
                (Kind::Ctr, 32) => Cipher::aes_256_ctr(),
                (Kind::Gcm, 16) => Cipher::aes_128_gcm(),
                (Kind::Gcm, 24) => Cipher::aes_192_gcm(),
                (Kind::Gcm, 32) => Cipher::aes_256_gcm(),
                _ => return Err(Error::CryptographicFailure("AES key of a wrong length")),
            };
            Ok((kind, cipher))
        }
        // Triple DES survives for old tape libraries and arrays (the 1.3 3DES case); three
        // independent keys only (24 bytes), ECB and CBC.
        alg::DES3 => {
            if key_len != 24 {
                return Err(Error::CryptographicFailure("3DES key of a wrong length"));
            }
            match p.block_cipher_mode {
                Some(bcm::ECB) => Ok((Kind::Des3Ecb, Cipher::des_ede3())),
                Some(bcm::CBC) => Ok((Kind::Des3Cbc, Cipher::des_ede3_cbc())),
                Some(_) => Err(Error::FeatureNotSupported("this Block Cipher Mode")),
                None => Err(Error::BadCryptographicParameters("no Block Cipher Mode")),
            }
        }
        alg::CHA_CHA20 if key_len == 32 => Ok((Kind::ChaCha20, Cipher::chacha20())),
        alg::CHA_CHA20_POLY1305 if key_len == 32 => {
            Ok((Kind::ChaChaPoly, Cipher::chacha20_poly1305()))
        }
        alg::CHA_CHA20 | alg::CHA_CHA20_POLY1305 => Err(Error::CryptographicFailure(
            "ChaCha20 key of a wrong length",
        )),
        _ => Err(Error::FeatureNotSupported(
            "encryption with this Cryptographic Algorithm",
        )),
    }
}

/// Checks an AEAD tag length (bytes): 12..=16. The OASIS cases answer a wrong Tag Length with
/// General Failure.
pub(crate) fn check_tag_len(len: usize) -> Result<()> {
    if (12..=16).contains(&len) {
        Ok(())
    } else {
        Err(Error::GeneralFailure("invalid tag length"))
    }
}

/// The IV to use for encryption: the client's, or a fresh random one (returned as the second
/// value so that the response can carry it).
pub(crate) fn encryption_iv(kind: Kind, iv: Option<&[u8]>) -> Result<(Option<Vec<u8>>, bool)> {
    Ok(match iv {
        Some(iv) => (Some(iv.to_vec()), false),
        None if kind.default_iv_len() == 0 => (None, false),
        None => (
            Some(super::keygen::symmetric(kind.default_iv_len())?.to_vec()),
            true,
        ),
    })
}

/// The IV in the form OpenSSL takes; checks its length.
fn cipher_iv(kind: Kind, iv: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
    let bad = Error::InvalidField("IV/Counter/Nonce of a wrong length");
    match (kind, iv) {
        (Kind::Ecb | Kind::Des3Ecb, _) => Ok(None),
        (_, None) => Err(Error::InvalidMessage("missing IV/Counter/Nonce")),
        (Kind::Cbc | Kind::Ctr, Some(iv)) if iv.len() == 16 => Ok(Some(iv.to_vec())),
        (Kind::Des3Cbc, Some(iv)) if iv.len() == 8 => Ok(Some(iv.to_vec())),
        (Kind::Gcm, Some(iv)) if !iv.is_empty() => Ok(Some(iv.to_vec())),
        (Kind::ChaChaPoly, Some(iv)) if iv.len() == 12 => Ok(Some(iv.to_vec())),
        // OpenSSL's ChaCha20 IV is the last four words of the state: block counter, then nonce.
        // An 8-byte nonce is the original ChaCha20 (64-bit counter), 12 bytes RFC 8439 (32-bit
        // counter), 16 bytes a counter and nonce given together.
        (Kind::ChaCha20, Some(iv)) => match iv.len() {
            8 => Ok(Some([&[0u8; 8][..], iv].concat())),
            12 => Ok(Some([&[0u8; 4][..], iv].concat())),
            16 => Ok(Some(iv.to_vec())),
            _ => Err(bad),
        },
        _ => Err(bad),
    }
}

/// One symmetric operation.
pub(crate) struct Job<'a> {
    /// Encrypt or decrypt.
    pub(crate) dir: Dir,
    /// The cipher family.
    pub(crate) kind: Kind,
    /// The OpenSSL cipher.
    pub(crate) cipher: Cipher,
    /// PKCS#5 padding (ECB/CBC).
    pub(crate) pad: bool,
    /// IV/Counter/Nonce (None for ECB).
    pub(crate) iv: Option<&'a [u8]>,
    /// Additional authenticated data (AEAD).
    pub(crate) aad: &'a [u8],
    /// The tag length to produce (AEAD encrypt).
    pub(crate) tag_len: usize,
    /// The tag to check (AEAD decrypt, when finishing).
    pub(crate) tag: Option<&'a [u8]>,
}

/// What [`run`] produced.
#[derive(Debug)]
pub(crate) struct Output {
    /// The ciphertext or plaintext.
    pub(crate) data: Zeroizing<Vec<u8>>,
    /// The authentication tag (AEAD encrypt, when finished).
    pub(crate) tag: Option<Vec<u8>>,
}

/// Runs `job` over `input` with `key`. With `finish` false (a streaming step), only the
/// output of the update is produced: no padding, no tag.
pub(crate) fn run(job: &Job<'_>, key: &[u8], input: &[u8], finish: bool) -> Result<Output> {
    let mut running = Running::start(job, key)?;
    let mut data = running.update(input)?;
    let mut tag = None;
    if finish {
        let last = running.finish(job.tag)?;
        data.extend_from_slice(&last.data);
        tag = last.tag;
    }
    Ok(Output { data, tag })
}

/// A cipher under way: the OpenSSL context with its key schedule (cleansed by OpenSSL when
/// freed), fed in parts. A streamed Encrypt or Decrypt keeps one between its requests
/// (`crypto::stream`); [`run`] is the one-part case.
pub(crate) struct Running {
    ctx: CipherCtx,
    dir: Dir,
    kind: Kind,
    /// No padding on a block mode: the whole input must be a multiple of `block`.
    exact_blocks: bool,
    block: usize,
    /// Bytes fed so far.
    fed: usize,
    /// The tag length to produce (AEAD encrypt).
    tag_len: usize,
}

impl Running {
    /// Sets the cipher up for `job` with `key` (IV, padding, AAD).
    pub(crate) fn start(job: &Job<'_>, key: &[u8]) -> Result<Running> {
        let iv = cipher_iv(job.kind, job.iv)?;
        let cipher = openssl::cipher::Cipher::from_nid(job.cipher.nid())
            .ok_or(Error::Internal("cipher without NID"))?;
        let mut ctx = CipherCtx::new().map_err(ossl)?;
        match job.dir {
            Dir::Encrypt => ctx.encrypt_init(Some(cipher), None, None),
            Dir::Decrypt => ctx.decrypt_init(Some(cipher), None, None),
        }
        .map_err(ossl)?;
        if let Some(iv) = &iv
            && iv.len() != cipher.iv_length()
        {
            ctx.set_iv_length(iv.len()).map_err(ossl)?;
        }
        if key.len() != cipher.key_length() {
            ctx.set_key_length(key.len()).map_err(ossl)?;
        }
        match job.dir {
            Dir::Encrypt => ctx.encrypt_init(None, Some(key), iv.as_deref()),
            Dir::Decrypt => ctx.decrypt_init(None, Some(key), iv.as_deref()),
        }
        .map_err(ossl)?;
        let padded = matches!(
            job.kind,
            Kind::Ecb | Kind::Cbc | Kind::Des3Ecb | Kind::Des3Cbc
        );
        ctx.set_padding(padded && job.pad);
        if job.kind.aead() {
            if job.dir == Dir::Encrypt {
                check_tag_len(job.tag_len)?;
            }
            if !job.aad.is_empty() {
                ctx.cipher_update(job.aad, None).map_err(ossl)?;
            }
        }
        Ok(Running {
            ctx,
            dir: job.dir,
            kind: job.kind,
            exact_blocks: padded && !job.pad,
            block: job.cipher.block_size(),
            fed: 0,
            tag_len: job.tag_len,
        })
    }

    /// A copy of the running cipher (a stream's step works on a copy until it completes).
    pub(crate) fn duplicate(&self) -> Result<Running> {
        let mut ctx = CipherCtx::new().map_err(ossl)?;
        ctx.copy(&self.ctx).map_err(ossl)?;
        Ok(Running {
            ctx,
            dir: self.dir,
            kind: self.kind,
            exact_blocks: self.exact_blocks,
            block: self.block,
            fed: self.fed,
            tag_len: self.tag_len,
        })
    }

    /// Whether this decrypts with an AEAD cipher (whose output must wait for the tag).
    pub(crate) fn aead_decrypt(&self) -> bool {
        self.kind.aead() && self.dir == Dir::Decrypt
    }

    /// Feeds `input`; the output it completes.
    pub(crate) fn update(&mut self, input: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            input
                .len()
                .saturating_add(self.block.saturating_mul(2))
                .saturating_add(16),
        ));
        self.ctx.cipher_update_vec(input, &mut out).map_err(ossl)?;
        self.fed = self.fed.saturating_add(input.len());
        Ok(out)
    }

    /// Ends the cipher: the last output (padding), and the tag of an AEAD encryption; an AEAD
    /// decryption checks `tag` here.
    pub(crate) fn finish(&mut self, tag: Option<&[u8]>) -> Result<Output> {
        let fail = |_| Error::CryptographicFailure("decryption failed");
        if self.exact_blocks && !self.fed.is_multiple_of(self.block) {
            return Err(Error::InvalidField(
                "data is not a multiple of the block size (no padding)",
            ));
        }
        if self.aead_decrypt() {
            let tag = tag.ok_or(Error::MissingData("Authenticated Encryption Tag"))?;
            check_tag_len(tag.len())?;
            self.ctx.set_tag(tag).map_err(fail)?;
        }
        let mut out = Zeroizing::new(Vec::with_capacity(self.block.saturating_mul(2)));
        self.ctx
            .cipher_final_vec(&mut out)
            .map_err(|e| match self.dir {
                Dir::Decrypt => fail(e),
                Dir::Encrypt => ossl(e),
            })?;
        let mut tag_out = None;
        if self.kind.aead() && self.dir == Dir::Encrypt {
            let mut t = vec![0u8; self.tag_len];
            self.ctx.tag(&mut t).map_err(ossl)?;
            tag_out = Some(t);
        }
        Ok(Output {
            data: out,
            tag: tag_out,
        })
    }
}

/// Whether the parameters ask for PKCS#5 padding (anything else, or nothing, is no padding).
pub(crate) fn wants_padding(p: &Params) -> Result<bool> {
    match p.padding_method {
        None | Some(padding_method::NONE) => Ok(false),
        Some(padding_method::PKCS5) => Ok(true),
        Some(_) => Err(Error::FeatureNotSupported("this Padding Method")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn params(mode: u32, pad: Option<u32>) -> Params {
        Params {
            block_cipher_mode: Some(mode),
            padding_method: pad,
            ..Params::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn enc(
        a: u32,
        p: &Params,
        key: &[u8],
        iv: Option<&[u8]>,
        aad: &[u8],
        tag_len: usize,
        pt: &[u8],
    ) -> Output {
        let (kind, cipher) = select(a, key.len(), p).unwrap();
        let job = Job {
            dir: Dir::Encrypt,
            kind,
            cipher,
            pad: wants_padding(p).unwrap(),
            iv,
            aad,
            tag_len,
            tag: None,
        };
        run(&job, key, pt, true).unwrap()
    }

    fn dec(
        a: u32,
        p: &Params,
        key: &[u8],
        iv: Option<&[u8]>,
        aad: &[u8],
        tag: Option<&[u8]>,
        ct: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (kind, cipher) = select(a, key.len(), p).unwrap();
        let job = Job {
            dir: Dir::Decrypt,
            kind,
            cipher,
            pad: wants_padding(p).unwrap(),
            iv,
            aad,
            tag_len: 0,
            tag,
        };
        run(&job, key, ct, true).map(|o| o.data)
    }

    #[test]
    fn aes_128_ecb_fips197_c1() {
        let key = h("000102030405060708090a0b0c0d0e0f");
        let p = params(bcm::ECB, None);
        let o = enc(
            alg::AES,
            &p,
            &key,
            None,
            &[],
            0,
            &h("00112233445566778899aabbccddeeff"),
        );
        assert_eq!(*o.data, h("69c4e0d86a7b0430d8cdb78070b4c55a"));
        let pt = dec(alg::AES, &p, &key, None, &[], None, &o.data).unwrap();
        assert_eq!(*pt, h("00112233445566778899aabbccddeeff"));
    }

    #[test]
    fn des3_ecb_sp800_67_example_and_round_trip() {
        // NIST SP 800-67 Rev. 1, Appendix B: "The qufck brown fox jump".
        let key = h("0123456789abcdef23456789abcdef01456789abcdef0123");
        let p = params(bcm::ECB, Some(padding_method::NONE));
        let pt = b"The qufck brown fox jump".to_vec();
        let o = enc(alg::DES3, &p, &key, None, &[], 0, &pt);
        assert_eq!(
            *o.data,
            h("a826fd8ce53b855fcce21c8112256fe668d5c05dd9b6b900")
        );
        // A two-key (16-byte) 3DES key is refused rather than guessed at.
        assert!(select(alg::DES3, 16, &p).is_err());
    }

    #[test]
    fn aes_128_cbc_sp800_38a_f21_and_pkcs5() {
        let key = h("2b7e151628aed2a6abf7158809cf4f3c");
        let iv = h("000102030405060708090a0b0c0d0e0f");
        let pt = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        let p = params(bcm::CBC, Some(padding_method::NONE));
        let o = enc(alg::AES, &p, &key, Some(&iv), &[], 0, &pt);
        assert_eq!(
            *o.data,
            h("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")
        );
        // PKCS#5 adds a full block of 0x10 to block-aligned data.
        let p5 = params(bcm::CBC, Some(padding_method::PKCS5));
        let o5 = enc(alg::AES, &p5, &key, Some(&iv), &[], 0, &pt);
        assert_eq!(o5.data.len(), 48);
        assert_eq!(o5.data.get(..32), Some(&o.data[..]));
        assert_eq!(
            *dec(alg::AES, &p5, &key, Some(&iv), &[], None, &o5.data).unwrap(),
            pt
        );
        // Bad padding is a cryptographic failure.
        let wrong_iv = h("ff0102030405060708090a0b0c0d0e0f");
        let mut bad = o5.data.to_vec();
        if let Some(b) = bad.get_mut(47) {
            *b ^= 1;
        }
        assert!(matches!(
            dec(alg::AES, &p5, &key, Some(&wrong_iv), &[], None, &bad),
            Err(Error::CryptographicFailure(_))
        ));
        // No IV for CBC decryption is an Invalid Message (CS-BC-M-11).
        assert!(matches!(
            dec(alg::AES, &p5, &key, None, &[], None, &o5.data),
            Err(Error::InvalidMessage(_))
        ));
    }

    #[test]
    fn aes_128_ctr_sp800_38a_f51() {
        let key = h("2b7e151628aed2a6abf7158809cf4f3c");
        let iv = h("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let p = params(bcm::CTR, None);
        let o = enc(
            alg::AES,
            &p,
            &key,
            Some(&iv),
            &[],
            0,
            &h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"),
        );
        assert_eq!(
            *o.data,
            h("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff")
        );
    }

    #[test]
    fn aes_gcm_nist_test_cases_2_and_5() {
        // Test Case 2 (CS-BC-M-GCM-1): zero key, zero 96-bit IV, one zero block.
        let p = params(bcm::GCM, None);
        let key = [0u8; 16];
        let iv = [0u8; 12];
        let o = enc(alg::AES, &p, &key, Some(&iv), &[], 16, &[0u8; 16]);
        assert_eq!(*o.data, h("0388dace60b6a392f328c2b971b2fe78"));
        assert_eq!(o.tag, Some(h("ab6e47d42cec13bdf53a67b21257bddf")));
        let full = h("ab6e47d42cec13bdf53a67b21257bddf");
        assert_eq!(
            *dec(alg::AES, &p, &key, Some(&iv), &[], Some(&full), &o.data).unwrap(),
            [0u8; 16]
        );
        // A truncated (12-byte) tag verifies; a changed one does not.
        assert!(
            dec(
                alg::AES,
                &p,
                &key,
                Some(&iv),
                &[],
                Some(&full[..12]),
                &o.data
            )
            .is_ok()
        );
        let mut bad = full.clone();
        bad[0] = 0;
        assert!(matches!(
            dec(alg::AES, &p, &key, Some(&iv), &[], Some(&bad), &o.data),
            Err(Error::CryptographicFailure(_))
        ));
        // Test Case 5 (CS-BC-M-GCM-3): a 64-bit IV and additional data.
        let key = h("feffe9928665731c6d6a8f9467308308");
        let iv = h("cafebabefacedbad");
        let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let pt = h(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let o = enc(alg::AES, &p, &key, Some(&iv), &aad, 16, &pt);
        assert_eq!(
            *o.data,
            h(
                "61353b4c2806934a777ff51fa22a4755699b2a714fcdc6f83766e5f97b6c7423\
               73806900e49f24b22b097544d4896b424989b5e1ebac0f07c23f4598"
            )
        );
        assert_eq!(o.tag, Some(h("3612d2e79e3b0785561be14aaca2fccb")));
    }

    #[test]
    fn gcm_tag_lengths_outside_12_to_16_are_refused() {
        let p = params(bcm::GCM, None);
        let (kind, cipher) = select(alg::AES, 16, &p).unwrap();
        for len in [1, 11, 17, 32] {
            let job = Job {
                dir: Dir::Encrypt,
                kind,
                cipher,
                pad: false,
                iv: Some(&[0u8; 12]),
                aad: &[],
                tag_len: len,
                tag: None,
            };
            assert!(matches!(
                run(&job, &[0u8; 16], &[0u8; 16], true),
                Err(Error::GeneralFailure(_))
            ));
        }
    }

    #[test]
    fn chacha20_original_8_byte_nonce_vector() {
        // The all-zero key and nonce keystream (draft-agl-tls-chacha20poly1305 / CHACHA20-1).
        let p = Params::default();
        let o = enc(
            alg::CHA_CHA20,
            &p,
            &[0u8; 32],
            Some(&[0u8; 8]),
            &[],
            0,
            &[0u8; 64],
        );
        assert_eq!(
            *o.data,
            h(
                "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7\
               da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
            )
        );
    }

    #[test]
    fn chacha20_poly1305_rfc8439_2_8_2() {
        let key = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let iv = h("070000004041424344454647");
        let aad = h("50515253c0c1c2c3c4c5c6c7");
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let p = params(bcm::AEAD, None);
        let o = enc(alg::CHA_CHA20_POLY1305, &p, &key, Some(&iv), &aad, 16, pt);
        assert_eq!(
            o.data.get(..16),
            Some(&h("d31a8d34648e60db7b86afbc53ef7ec2")[..])
        );
        let tag = h("1ae10b594f09e26a7e902ecbd0600691");
        assert_eq!(o.tag, Some(tag.clone()));
        let back = dec(
            alg::CHA_CHA20_POLY1305,
            &p,
            &key,
            Some(&iv),
            &aad,
            Some(&tag[..12]),
            &o.data,
        );
        assert_eq!(&**back.unwrap(), &pt[..]);
        let mut bad = tag.clone();
        bad[0] ^= 0xff;
        assert!(matches!(
            dec(
                alg::CHA_CHA20_POLY1305,
                &p,
                &key,
                Some(&iv),
                &aad,
                Some(&bad),
                &o.data
            ),
            Err(Error::CryptographicFailure(_))
        ));
    }

    #[test]
    fn streaming_steps_concatenate_to_the_one_shot_result() {
        let key = h("feffe9928665731c6d6a8f9467308308");
        let iv = h("cafebabefacedbad");
        let p = params(bcm::GCM, None);
        let (kind, cipher) = select(alg::AES, 16, &p).unwrap();
        let job = Job {
            dir: Dir::Encrypt,
            kind,
            cipher,
            pad: false,
            iv: Some(&iv),
            aad: &[],
            tag_len: 16,
            tag: None,
        };
        let pt = [7u8; 45];
        let whole = run(&job, &key, &pt, true).unwrap();
        let first = run(&job, &key, &pt[..20], false).unwrap();
        assert_eq!(first.data.get(..), whole.data.get(..20));
        assert!(first.tag.is_none());
    }
}
