package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/qinba/qinba/settlement"
)

func init() {
	register(&command{
		name: "settle-cases",
		summary: "Settle the conformance cases of settlement/SPEC.md: the input document on stdin, the output on stdout.\n" +
			"An invalid case gets an error and the others are still settled; the exit status is 0 when the input parses.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			policyFile := fs.String("policy", "", "policy file (JSON, the format of baokang-2019.json); empty uses the embedded reference policy "+settlement.ReferencePolicyID)
			return func(ctx context.Context, _ []string) error {
				p := settlement.ReferencePolicy()
				if *policyFile != "" {
					var err error
					if p, err = settlement.LoadPolicyFile(*policyFile); err != nil {
						return &ExitError{Code: 2, Err: fmt.Errorf("policy %s: %w", *policyFile, err)}
					}
				}
				if err := settlement.RunCases(p, env.Stdin, env.Stdout); err != nil {
					return &ExitError{Code: 1, Err: err}
				}
				return nil
			}
		},
	})
}
