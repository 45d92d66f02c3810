//! SM2 digital signatures (GB/T 32918.2) on the curve sm2p256v1, with SM3 and the
//! distinguishing identifier of GB/T 35276 (default `1234567812345678`).
