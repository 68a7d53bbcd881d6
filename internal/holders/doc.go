// Package holders finds what keeps a mount or a block device busy, so
// that a stage refusing to detach it lazily can say why: the processes
// whose working directory, root, executable, open files or memory maps
// are on it, and other mount namespaces that mount it.
//
// A target is matched by device number, which also finds processes in
// other mount namespaces (a guest's, whose paths differ from the host's),
// or by path, for a tree whose files another filesystem's device number
// would not name (an overlay maps files of its layers). Find reads /proc
// only; what it cannot read (a process that exits meanwhile) it skips.
package holders
