package query

import (
	"math"
	"math/bits"
	"strconv"
)

// SQLite's own number ↔ text conversions, ported from the SQLite that sqlws links
// (modernc.org/sqlite, SQLite 3.54: util.c sqlite3AtoF, sqlite3Fp10Convert2,
// sqlite3FpDecode; printf.c "%!.17g"). The stream's evaluator must convert exactly as
// the SQL REST runs does — text to a number when a numeric column is compared with
// text, a REAL to text when LIKE reads it — and SQLite's conversions are not Go's:
// its REAL → text rendering rounds twice (1.0/3 is 0.33333333333333332, not …31), and
// its text → REAL reading keeps at most 19 digits. TestAgreement compares both ways
// over random values; a new SQLite that changes these shows up there.

// sqliteSpace is SQLite's sqlite3Isspace: ' ', \t, \n, \v, \f, \r.
func sqliteSpace(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }

func sqliteDigit(c byte) bool { return c >= '0' && c <= '9' }

// sqliteAtoF is sqlite3AtoF: the REAL value of text s, read up to its first NUL
// (SQLite reads a zero-terminated copy), and a result code: ≤ 0 when s is not a
// well-formed number (with leading and trailing spaces allowed), else a bit set in
// which 2 means a '.' or an exponent was seen (the text is not an integer literal).
func sqliteAtoF(s string) (float64, int) {
	at := func(i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	z := 0
	neg := false
	var m uint64
	d := 0
	mState := 0
	const big = (math.MaxUint64 - 9) / 10
	for sqliteSpace(at(z)) {
		z++
	}
	switch c := at(z); {
	case sqliteDigit(c):
	case c == '-' && sqliteDigit(at(z+1)):
		neg = true
		z++
	case c == '+' && sqliteDigit(at(z+1)):
		z++
	case c == '-':
		neg = true
		z++
	case c == '+':
		z++
	}
	if sqliteDigit(at(z)) {
		mState = 1
		m = uint64(at(z) - '0')
		z++
		for sqliteDigit(at(z)) {
			m = m*10 + uint64(at(z)-'0')
			z++
			if m >= big {
				mState = 9
				for sqliteDigit(at(z)) {
					z++
					d++
				}
				break
			}
		}
	}
	if at(z) == '.' {
		z++
		if sqliteDigit(at(z)) {
			mState |= 1
			for {
				if m < big {
					m = m*10 + uint64(at(z)-'0')
					d--
				} else {
					mState = 11
				}
				z++
				if !sqliteDigit(at(z)) {
					break
				}
			}
		} else if mState == 0 {
			return 0, 0
		}
		mState |= 2
	} else if mState == 0 {
		return 0, 0
	}
	if c := at(z); c == 'e' || c == 'E' {
		z++
		esign := 1
		if at(z) == '-' {
			esign = -1
			z++
		} else if at(z) == '+' {
			z++
		}
		if sqliteDigit(at(z)) {
			exp := int(at(z) - '0')
			z++
			mState |= 2
			for sqliteDigit(at(z)) {
				if exp < 10000 {
					exp = exp*10 + int(at(z)-'0')
				} else {
					exp = 10000
				}
				z++
			}
			d += esign * exp
		} else {
			z-- // leave z at 'e', '+' or '-': the text is not a number
		}
	}
	var r float64
	if m == 0 {
		mState |= 4
	} else {
		r = fp10Convert2(m, d)
	}
	if neg {
		r = -r
	}
	if at(z) == 0 {
		return r, mState
	}
	if sqliteSpace(at(z)) {
		for sqliteSpace(at(z)) {
			z++
		}
		if at(z) == 0 {
			return r, mState
		}
	}
	return r, -1
}

// numericAffinity is SQLite's applyNumericAffinity(…, bTryForInt=0), as a comparison
// with a column of INTEGER, REAL or NUMERIC affinity applies it to a TEXT operand:
// well-formed numeric text becomes an int64 (an integer literal that fits) or a
// float64; any other text stays text.
func numericAffinity(s string) any {
	r, rc := sqliteAtoF(s)
	if rc <= 0 {
		return s
	}
	if rc&2 == 0 {
		if i, ok := alsoAnInt(s, r); ok {
			return i
		}
	}
	return r
}

// alsoAnInt is SQLite's alsoAnInt: integer text whose REAL value is a small whole
// number, or that reads exactly as an int64 (sqlite3Atoi64 over the whole text).
func alsoAnInt(s string, r float64) (int64, bool) {
	i := realToI64(r)
	if r == 0 || (math.Float64bits(r) == math.Float64bits(float64(i)) && i >= -2251799813685248 && i < 2251799813685248) {
		return i, true
	}
	a, b := 0, len(s)
	for a < b && sqliteSpace(s[a]) {
		a++
	}
	for b > a && sqliteSpace(s[b-1]) {
		b--
	}
	n, err := strconv.ParseInt(s[a:b], 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// realToI64 is sqlite3RealToI64: a double truncated to int64, saturating.
func realToI64(r float64) int64 {
	if r < -9223372036854774784.0 {
		return math.MinInt64
	}
	if r > 9223372036854774784.0 {
		return math.MaxInt64
	}
	return int64(r)
}

var fpBase = [27]uint64{
	0x8000000000000000, 0xa000000000000000, 0xc800000000000000, 0xfa00000000000000,
	0x9c40000000000000, 0xc350000000000000, 0xf424000000000000, 0x9896800000000000,
	0xbebc200000000000, 0xee6b280000000000, 0x9502f90000000000, 0xba43b74000000000,
	0xe8d4a51000000000, 0x9184e72a00000000, 0xb5e620f480000000, 0xe35fa931a0000000,
	0x8e1bc9bf04000000, 0xb1a2bc2ec5000000, 0xde0b6b3a76400000, 0x8ac7230489e80000,
	0xad78ebc5ac620000, 0xd8d726b7177a8000, 0x878678326eac9000, 0xa968163f0a57b400,
	0xd3c21bcecceda100, 0x84595161401484a0, 0xa56fa5b99019a5c8,
}

var fpScale = [26]uint64{
	0x8049a4ac0c5811ae, 0xcf42894a5dce35ea, 0xa76c582338ed2621, 0x873e4f75e2224e68,
	0xda7f5bf590966848, 0xb080392cc4349dec, 0x8e938662882af53e, 0xe65829b3046b0afa,
	0xba121a4650e4ddeb, 0x964e858c91ba2655, 0xf2d56790ab41c2a2, 0xc428d05aa4751e4c,
	0x9e74d1b791e07e48, 0xcccccccccccccccc, 0xcecb8f27f4200f3a, 0xa70c3c40a64e6c51,
	0x86f0ac99b4e8dafd, 0xda01ee641a708de9, 0xb01ae745b101e9e4, 0x8e41ade9fbebc27d,
	0xe5d3ef282a242e81, 0xb9a74a0637ce2ee1, 0x95f83d0a1fb69cd9, 0xf24a01a73cf2dccf,
	0xc3b8358109e84f07, 0x9e19db92b4e31ba9,
}

var fpScaleLo = [26]uint32{
	0x205b896d, 0x52064cad, 0xaf2af2b8, 0x5a7744a7, 0xaf39a475, 0xbd8d794e, 0x547eb47b,
	0x0cb4a5a3, 0x92f34d62, 0x3a6a07f9, 0xfae27299, 0xaa97e14c, 0x775ea265, 0xcccccccc,
	0, 0x999090b6, 0x69a028bb, 0xe80e6f48, 0x5ec05dd0, 0x14588f14, 0x8f1668c9, 0x6d953e2c,
	0x4abdaf10, 0xbc633b39, 0x0a862f81, 0x6c07a2c2,
}

func multiply128(a, b uint64) (hi, lo uint64) { return bits.Mul64(a, b) }

// multiply160 is sqlite3Multiply160: the top 96 bits of (a·2^32 + aLo) · b, as the
// high 64 bits and the next 32.
func multiply160(a uint64, aLo uint32, b uint64) (uint64, uint32) {
	x2, x1, x0 := a>>32, a&0xffffffff, uint64(aLo)
	y1, y0 := b>>32, b&0xffffffff
	x2y1 := x2 * y1
	r4 := x2y1 >> 32
	x2y0 := x2 * y0
	x1y1 := x1 * y1
	r3 := x2y1&0xffffffff + x2y0>>32 + x1y1>>32
	x1y0 := x1 * y0
	x0y1 := x0 * y1
	r2 := x2y0&0xffffffff + x1y1&0xffffffff + x1y0>>32 + x0y1>>32
	x0y0 := x0 * y0
	r1 := x1y0&0xffffffff + x0y1&0xffffffff + x0y0>>32
	r2 += r1 >> 32
	r3 += r2 >> 32
	return r4<<32 + r3, uint32(r2 & 0xffffffff)
}

func pwr2to10(p int) int { return int(int32(p) * 78913 >> 18) }
func pwr10to2(p int) int { return int(int32(p) * 108853 >> 15) }

// powerOfTen is SQLite's powerOfTen: 10^p as a 96-bit mantissa (hi, lo).
func powerOfTen(p int) (uint64, uint32) {
	var g, n int
	if p < 0 {
		if p == -1 {
			return fpScale[13], fpScaleLo[13]
		}
		g, n = p/27, p%27
		if n != 0 {
			g--
			n += 27
		}
	} else {
		if p < 27 {
			return fpBase[p], 0
		}
		g, n = p/27, p%27
	}
	s := fpScale[g+13]
	if n == 0 {
		return s, fpScaleLo[g+13]
	}
	x, lo := multiply160(s, fpScaleLo[g+13], fpBase[n])
	if x&(1<<63) == 0 {
		x = x<<1 | uint64(lo>>31&1)
		lo = lo<<1 | 1
	}
	return x, lo
}

// fp10Convert2 is sqlite3Fp10Convert2: the double nearest d·10^p.
func fp10Convert2(d uint64, p int) float64 {
	if p < -348 {
		return 0
	}
	if p > 347 {
		return math.Inf(1)
	}
	b := 64 - bits.LeadingZeros64(d)
	lp := pwr10to2(p)
	e := 53 - b - lp
	if e > 1074 {
		if e >= 1130 {
			return 0
		}
		e = 1074
	}
	s := -(e - (64 - b) + lp + 3)
	pwr10h, pwr10l := powerOfTen(p)
	if pwr10l != 0 {
		pwr10h++
		pwr10l = ^pwr10l
	}
	x := d << (64 - b)
	hi, lo := multiply128(x, pwr10h)
	mid1 := uint32(lo >> 32)
	sticky := uint64(1)
	if hi&(uint64(1)<<s-1) == 0 {
		h2, _ := multiply128(x, uint64(pwr10l)<<32)
		mid2 := uint32(h2 >> 32)
		sticky = 0
		if mid1-mid2 > 1 {
			sticky = 1
		}
		if mid1 < mid2 {
			hi--
		}
	}
	u := hi>>s | sticky
	if u >= 1<<55-2 {
		u = u>>1 | u&1
		e--
	}
	m := (u + 1 + (u>>2)&1) >> 2
	if e <= -972 {
		return math.Inf(1)
	}
	if m&(1<<52) != 0 {
		m = m&^(1<<52) | uint64(1075-e)<<52
	}
	return math.Float64frombits(m)
}

// fp2Convert10 is sqlite3Fp2Convert10: m·2^e as an n-digit decimal d·10^p.
func fp2Convert10(m uint64, e, n int) (uint64, int) {
	p := n - 1 - pwr2to10(e+63)
	pw, _ := powerOfTen(p)
	h, _ := multiply128(m, pw)
	var d uint64
	if n == 18 {
		h >>= uint(-(e + pwr10to2(p) + 2))
		d = (h + (h<<1)&2) >> 1
	} else {
		d = h >> uint(-(e + pwr10to2(p) + 1))
	}
	return d, -p
}

// fpDecode is sqlite3FpDecode(r, iRound, mxRound) for a finite r > 0: its significant
// digits (no trailing zeros) and the position of the decimal point.
func fpDecode(r float64, iRound, mxRound int) (digits []byte, iDP int) {
	v := math.Float64bits(r)
	e := int(v >> 52 & 0x7ff)
	v &= 0x000fffffffffffff
	if e == 0 {
		nn := bits.LeadingZeros64(v)
		v <<= uint(nn)
		e = -1074 - nn
	} else {
		v = v<<11 | 1<<63
		e -= 1086
	}
	nd := 18
	if iRound > 0 && iRound < 18 {
		nd = iRound + 1
	}
	v, exp := fp2Convert10(v, e, nd)
	var buf [24]byte
	i := len(buf)
	for v > 0 {
		i--
		buf[i] = byte(v%10) + '0'
		v /= 10
	}
	z := buf[i:]
	n := len(z)
	iDP = n + exp
	if iRound > 0 && (iRound < n || n > mxRound) {
		if iRound > mxRound {
			iRound = mxRound
		}
		if iRound == 17 {
			// SQLite tries fewer digits when the 16th and 17th are 99 or 00 and
			// the shorter text reads back as r (49.47, not 49.469999999999999).
			if z[15] == '9' && z[14] == '9' {
				jj := 14
				for jj > 0 && z[jj-1] == '9' {
					jj--
				}
				var v2 uint64 = 1
				if jj > 0 {
					v2 = uint64(z[0] - '0')
					for k := 1; k < jj; k++ {
						v2 = v2*10 + uint64(z[k]-'0')
					}
					v2++
				}
				if r == fp10Convert2(v2, exp+n-jj) {
					iRound = jj + 1
				}
			} else if iDP >= n || (z[15] == '0' && z[14] == '0' && z[13] == '0') {
				jj := 13
				for z[jj-1] == '0' {
					jj--
				}
				v2 := uint64(z[0] - '0')
				for k := 1; k < jj; k++ {
					v2 = v2*10 + uint64(z[k]-'0')
				}
				if r == fp10Convert2(v2, exp+n-jj) {
					iRound = jj + 1
				}
			}
		}
		n = iRound
		if z[iRound] >= '5' {
			j := iRound - 1
			for {
				z[j]++
				if z[j] <= '9' {
					break
				}
				z[j] = '0'
				if j == 0 {
					i--
					buf[i] = '1'
					z = buf[i:]
					n++
					iDP++
					break
				}
				j--
			}
		}
	}
	for n > 0 && z[n-1] == '0' {
		n--
	}
	return z[:n], iDP
}

// realText is SQLite's text of a REAL (vdbeMemRenderNum: "%!.17g" with the
// connection's default 17 digits): 7.0, 0.1, 1.0e+20, 1.5e-07, Inf.
func realText(r float64) string {
	return string(appendRealText(nil, r))
}

func appendRealText(dst []byte, r float64) []byte {
	switch {
	case math.IsInf(r, 1):
		return append(dst, "Inf"...)
	case math.IsInf(r, -1):
		return append(dst, "-Inf"...)
	case math.IsNaN(r):
		return append(dst, "NaN"...)
	case r == 0:
		return append(dst, "0.0"...) // -0.0 too: SQLite sees no sign on zero
	}
	if r < 0 {
		dst = append(dst, '-')
		r = -r
	}
	z, iDP := fpDecode(r, 17, 20)
	n := len(z)
	exp := iDP - 1
	precision := 16
	float := true
	if exp < -4 || exp > precision {
		float = false
	} else {
		precision -= exp
	}
	e2 := 0
	if float {
		e2 = iDP - 1
	}
	start := len(dst)
	j := 0
	if e2 < 0 {
		dst = append(dst, '0')
	} else {
		j = min(e2+1, n)
		dst = append(dst, z[:j]...)
		e2 -= j
		for ; e2 >= 0; e2-- {
			dst = append(dst, '0')
		}
		e2 = -1
	}
	dst = append(dst, '.')
	if e2 < -1 && precision > 0 {
		nn := min(-1-e2, precision)
		for range nn {
			dst = append(dst, '0')
		}
		precision -= nn
	}
	if precision > 0 {
		nn := min(n-j, precision)
		if nn > 0 {
			dst = append(dst, z[j:j+nn]...)
		}
	}
	// Trailing zeros go, but "!" keeps one digit after the point.
	for len(dst) > start && dst[len(dst)-1] == '0' {
		dst = dst[:len(dst)-1]
	}
	if dst[len(dst)-1] == '.' {
		dst = append(dst, '0')
	}
	if !float {
		exp = iDP - 1
		dst = append(dst, 'e')
		if exp < 0 {
			dst = append(dst, '-')
			exp = -exp
		} else {
			dst = append(dst, '+')
		}
		if exp >= 100 {
			dst = append(dst, byte(exp/100)+'0')
			exp %= 100
		}
		dst = append(dst, byte(exp/10)+'0', byte(exp%10)+'0')
	}
	return dst
}
