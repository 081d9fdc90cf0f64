#!/bin/sh
# Installed by setup-plugins.sh as .cache/bin/pulumi-language-python, in front of the real
# Python language host (.cache/libexec/pulumi-language-python, v3.260.0).
#
# Why: pulumi-language-yaml v1.25.0, the newest the Go module proxy serves, is built on Pulumi's
# SDK v3.206.0, which starts a language host with the plugin's root and runtime options as flags
# (-root=DIR -virtualenv=...). Pulumi dropped those flags (by SDK v3.248.0): the 3.260.0 host
# reads the same values from the RunPlugin request and exits with a usage error on the flags. So
# a YAML program could not use a provider plugin written in Python, like ours. Dropping them
# loses nothing; every other argument passes as it is. Remove this once the YAML host is built on
# a newer SDK (v3.248.0 already starts language hosts without these flags).
for arg do
    shift
    case $arg in
        -root=* | -virtualenv=* | -toolchain=* | -typechecker=*) continue ;;
    esac
    set -- "$@" "$arg"
done
exec "$(dirname "$0")/../libexec/pulumi-language-python" "$@"
