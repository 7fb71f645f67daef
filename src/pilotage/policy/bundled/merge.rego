# Merge policy: may a generated change enter the repository?
#
# Input (built by the governance agent from dev.pilotage.code.generated):
#   commit, base_commit, branch: strings
#   dependencies:     [{name, version, license}]  every runtime dependency of the change, licence from metadata
#   transitive_dependencies: [{name, version, license}]  optional: what those pull in (installed metadata, SBOM)
#   new_dependencies: [{name, version, license}]  the ones the change adds
#   files_changed:    [string]                     paths relative to the repository
#   (and the facts read by merge_dependencies.rego, merge_crypto.rego, merge_secrets.rego, merge_security.rego)
# Data:
#   data.license_allowlist: [string]  licence ids or names (settings.license_allowlist)
#
# Deny messages are objects {"msg", "rule", "file"?, "line"?}: the engine reports msg as the reason and keeps the
# rest for `pilotage policy check` (SARIF locations).
#
# A licence is allowed when, compared case-insensitively and word by word (separators - _ . , ; / ( ) + : are
# spaces), an allow-listed id appears inside it: "MIT License" matches "MIT", "BSD-3-Clause" matches "BSD". SPDX
# expressions are honoured: every operand of AND must be allowed, one alternative of OR suffices
# (SPDX License Expressions, https://spdx.github.io/spdx-spec/v2.3/SPDX-license-expressions/).
#
# The merge rules give the same verdict in rego-cpp (regopy) and in OPA on any input: built-ins only see values
# whose type was checked (OPA stops the evaluation on `lower(1)`; rego-cpp makes it undefined), sprintf formats
# only strings (with %s) and numbers (with %v), `not` applies to helpers whose arguments are bound, and a list of
# facts that is present but not a list, or a fact without its place, still denies (fail closed).
package pilotage.merge

deny contains {"msg": msg, "rule": "licence-unknown", "dependency": _name(dep)} if {
	some dep in _all_dependencies
	_unknown(_license(dep))
	msg := sprintf(
		"dependency %s %s has no known licence: declare it in the package metadata or review it by hand",
		[_name(dep), _version(dep)],
	)
}

deny contains {"msg": msg, "rule": "licence-not-allowed", "dependency": _name(dep)} if {
	some dep in _all_dependencies
	lic := _license(dep)
	not _unknown(lic)
	not _license_allowed(lic)
	msg := sprintf(
		"dependency %s %s has licence \"%s\", which is not on the licence allow-list",
		[_name(dep), _version(dep), lic],
	)
}

# Private keys and environment files must never be committed (CWE-798, use of hard-coded credentials).
deny contains {"msg": msg, "rule": "secret-file", "file": path} if {
	some path in input.files_changed
	is_string(path)
	regex.match(`(^|/)(id_rsa|id_ecdsa|id_ed25519|\.env|[^/]+\.pem|[^/]+\.key)$`, path)
	msg := sprintf("file %s looks like a secret (private key or .env): remove it from the change", [path])
}

# Lists of facts: absent means none found; present, they must be lists (and files_changed a list of paths).
_fact_lists := ["dependencies", "transitive_dependencies", "new_dependencies", "files_changed", "secrets", "crypto"]

deny contains {"msg": msg, "rule": "malformed-input"} if {
	some field in _fact_lists
	value := input[field]
	not is_array(value)
	msg := sprintf("merge input %s is not a list: the change cannot be checked", [field])
}

deny contains {"msg": msg, "rule": "malformed-input"} if {
	value := input.security_scan.findings
	not is_array(value)
	msg := "merge input security_scan.findings is not a list: the change cannot be checked"
}

deny contains {"msg": msg, "rule": "malformed-input"} if {
	is_array(input.files_changed)
	some i, path in input.files_changed
	not is_string(path)
	msg := sprintf("merge input files_changed[%v] is not a path: the change cannot be checked", [i])
}

# Direct dependencies, then the ones they pull in (the governance agent lists those apart).
_all_dependencies := array.concat(_direct, _transitive)

_direct := v if {
	v := input.dependencies
	is_array(v)
} else := []

_transitive := v if {
	v := input.transitive_dependencies
	is_array(v)
} else := []

# Missing fields get literal fallbacks inside the rule: regopy 1.5.2 renders an object.get() default (or a
# string literal passed as a function argument) with its quotes when formatted by sprintf.
_name(dep) := v if {
	v := dep.name
	is_string(v)
} else := "(unnamed)"

_version(dep) := v if {
	v := dep.version
	is_string(v)
} else := "(no version)"

_license(dep) := v if {
	v := dep.license
	is_string(v)
} else := "UNKNOWN"

_unknown(lic) if trim_space(lic) == ""

_unknown(lic) if upper(trim_space(lic)) == "UNKNOWN"

_license_allowed(lic) if {
	every conjunct in split(lower(lic), " and ") {
		_alternative_allowed(conjunct)
	}
}

# An alternative matches an allow-listed id when its padded form (lower case, separators as single spaces,
# e.g. "Apache-2.0" -> " apache 2 0 ") contains the padded id: a whole-word match, so "MIT License" matches
# "MIT" but "disclaimer" does not match "ISC". The plain substring test first is a cheap filter.
_alternative_allowed(expr) if {
	some alternative in split(expr, " or ")
	some id in data.license_allowlist
	is_string(id)
	contains(alternative, lower(id))
	contains(_padded(alternative), _padded(id))
}

_separators := {"-": " ", "_": " ", ".": " ", ",": " ", ";": " ", "/": " ", "(": " ", ")": " ", "+": " ", ":": " "}

_padded(s) := concat(" ", array.concat(array.concat([""], _words(s)), [""]))

# The place of a fact ({file, line}) for messages and findings: "app/main.py:3", or what is known of it; a fact
# without its place still denies (an object term with an undefined value would drop the whole deny).
_file(f) := v if {
	v := f.file
	is_string(v)
} else := ""

_line(f) := v if {
	v := f.line
	is_number(v)
} else := 0

_where(f) := sprintf("%s:%v", [f.file, f.line]) if {
	is_string(f.file)
	is_number(f.line)
} else := v if {
	v := f.file
	is_string(v)
} else := "(unknown place)"

# A string field of a fact, or a literal fallback (see _name above).
_text(f, key) := v if {
	v := f[key]
	is_string(v)
} else := "?"

_words(s) := [w | some w in split(strings.replace_n(_separators, lower(s)), " "); w != ""]
