// Package ansible holds the tests of the Ansible collection under
// ansible_collections/subhost/subhost (its Python is tested from Go so that
// `make test` runs it, and so that the config it renders is read back by
// the parser subhost itself uses, internal/config). The end-to-end
// playbook run, which boots subhosts, is in e2e (TestAnsibleFleet).
package ansible
