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
	regex.match(`(^|/)(id_rsa|id_ecdsa|id_ed25519|\.env|[^/]+\.pem|[^/]+\.key)$`, path)
	msg := sprintf("file %s looks like a secret (private key or .env): remove it from the change", [path])
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
	contains(alternative, lower(id))
	contains(_padded(alternative), _padded(id))
}

_separators := {"-": " ", "_": " ", ".": " ", ",": " ", ";": " ", "/": " ", "(": " ", ")": " ", "+": " ", ":": " "}

_padded(s) := concat(" ", array.concat(array.concat([""], _words(s)), [""]))

_words(s) := [w | some w in split(strings.replace_n(_separators, lower(s)), " "); w != ""]
