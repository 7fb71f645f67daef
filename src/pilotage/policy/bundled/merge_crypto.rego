# Banned cryptography: weak hashes used for security and the unmaintained pycrypto library.
#
# Input (facts from pilotage.policy.scans.scan_crypto, one per use found in the changed Python files):
#   crypto: [{file, line, kind, name, for_security, distribution}]
#     kind "hash":   name is the algorithm ("md5", "sha1" ...) of hashlib.<name>(), hashlib.new("<name>") or
#                    hmac.new(..., digestmod="<name>"); for_security is false only when the call passes
#                    usedforsecurity=False (Python 3.9+), the documented way to say "not a security use"
#     kind "import": name is the imported module ("Crypto.Cipher", "md5", "sha"); distribution is the installed
#                    distribution that provides it ("pycrypto", "pycryptodome") or null
#   dependencies: [{name, version, license}]
#
# MD5 and SHA-1 are broken for collision resistance (RFC 6151, RFC 6194; NIST SP 800-131A Rev. 2 disallows
# SHA-1 for digital signatures). pycrypto has been unmaintained since 2013 and has known vulnerabilities
# (CVE-2013-7459); pycryptodome, which reuses its "Crypto" package name, is allowed.
package pilotage.merge

_weak_hashes := {"md2", "md4", "md5", "sha1", "sha", "ripemd160"}

_banned_modules := {"md5", "sha"}

deny contains {"msg": msg, "rule": "banned-crypto", "file": _file(f), "line": _line(f)} if {
	some f in input.crypto
	f.kind == "hash"
	lower(_crypto_name(f)) in _weak_hashes
	not _not_for_security(f)
	msg := sprintf(
		"banned cryptography at %s: %s used for security; use hashlib.sha256 (or pass usedforsecurity=False for a non-security checksum)",
		[_where(f), _crypto_name(f)],
	)
}

deny contains {"msg": msg, "rule": "banned-crypto", "file": _file(f), "line": _line(f)} if {
	some f in input.crypto
	f.kind == "import"
	_pycrypto_import(f)
	msg := sprintf(
		"banned cryptography at %s: import of %s from pycrypto (unmaintained, CVE-2013-7459); use cryptography or pycryptodome",
		[_where(f), _crypto_name(f)],
	)
}

deny contains {"msg": msg, "rule": "banned-crypto", "file": _file(f), "line": _line(f)} if {
	some f in input.crypto
	f.kind == "import"
	_top_module(f) in _banned_modules
	msg := sprintf(
		"banned cryptography at %s: module %s (Python 2 weak hash); use hashlib.sha256",
		[_where(f), _crypto_name(f)],
	)
}

# A fact the rules above cannot read (not an object, another kind, no name) is refused, not ignored.
deny contains {"msg": msg, "rule": "banned-crypto", "file": _file(f), "line": _line(f)} if {
	some f in input.crypto
	not _crypto_fact(f)
	msg := sprintf("unreadable cryptography fact at %s: expected {kind: hash | import, name}", [_where(f)])
}

deny contains {"msg": msg, "rule": "banned-crypto", "dependency": _name(dep)} if {
	some dep in input.dependencies
	lower(_name(dep)) == "pycrypto"
	msg := sprintf(
		"dependency %s %s is banned cryptography (unmaintained since 2013, CVE-2013-7459): use cryptography or pycryptodome",
		[_name(dep), _version(dep)],
	)
}

_crypto_fact(f) if {
	f.kind in {"hash", "import"}
	is_string(f.name)
}

_crypto_name(f) := v if {
	v := f.name
	is_string(v)
} else := "(unnamed)"

_top_module(f) := split(_crypto_name(f), ".")[0]

# usedforsecurity=False: the documented way to say "not a security use"; anything else counts as one.
_not_for_security(f) if f.for_security == false

_pycrypto_import(f) if {
	f.distribution == "pycrypto"
}

# "Crypto" without a known distribution: pycrypto cannot be told from pycryptodome, so fail closed.
_pycrypto_import(f) if {
	_top_module(f) == "Crypto"
	not _distribution_known(f)
}

_distribution_known(f) if is_string(f.distribution)
