// Package pipeline holds pipeline definitions: which stages a subhost boots
// through, in order, and with which parameters. Two pipelines are built in
// (pretend-boot and control, the two shell-script variants); HCL files in
// /etc/subhost/pipelines and files named on the command line add pipelines
// or replace built-in ones.
package pipeline
