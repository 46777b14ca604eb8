<?php
// One step of the client compatibility job through PHP's ssh2 extension
// (libssh2) and its ssh2.sftp:// stream wrapper.
//
// Usage: php ssh2_job.php HOST PORT USER PASSWORD STEP ARGS...
//   upload LOCAL_DIR REMOTE       mkdir REMOTE and its tree, copy every file
//   list REMOTE...                prints JSON {remote: [[name, size, is_dir], ...]}
//   download REMOTE LOCAL_DIR     copies the remote tree into LOCAL_DIR
//   rename OLD NEW
//   delete FILE... -- DIR...
// Remote paths are relative to the login's start directory ("" = itself).
// Any failure prints a message on stderr and exits 1.

function fail($message) {
    fwrite(STDERR, $message . "\n");
    exit(1);
}

set_error_handler(function ($no, $message, $file, $line) {
    fail("PHP: $message (line $line)");
});

[$_, $host, $port, $user, $password, $step] = array_slice($argv, 0, 6);
$args = array_slice($argv, 6);

$session = ssh2_connect($host, (int) $port);
if (!$session) fail("ssh2_connect failed");
if (!ssh2_auth_password($session, $user, $password)) fail("ssh2_auth_password failed");
$sftp = ssh2_sftp($session);
if (!$sftp) fail("ssh2_sftp failed");
$start = ssh2_sftp_realpath($sftp, ".");
if ($start === false) fail("realpath(.) failed");

function remote($rel) {
    global $start;
    $base = rtrim($start, "/");
    return $rel === "" ? ($base === "" ? "/" : $base) : "$base/$rel";
}

function url($rel) {
    global $sftp;
    return "ssh2.sftp://" . intval($sftp) . remote($rel);
}

function copy_stream($from, $to) {
    $in = fopen($from, "rb");
    if (!$in) fail("cannot open $from");
    $out = fopen($to, "wb");
    if (!$out) fail("cannot open $to for writing");
    stream_copy_to_stream($in, $out);
    fclose($in);
    if (!fclose($out)) fail("closing $to failed");
}

function upload($local, $rel) {
    global $sftp;
    if (!ssh2_sftp_mkdir($sftp, remote($rel), 0755)) fail("mkdir $rel failed");
    foreach (scandir($local) as $name) {
        if ($name === "." || $name === "..") continue;
        if (is_dir("$local/$name")) {
            upload("$local/$name", "$rel/$name");
        } else {
            copy_stream("$local/$name", url("$rel/$name"));
        }
    }
}

function listing($rel) {
    global $sftp;
    $dir = opendir(url($rel));
    if (!$dir) fail("opendir $rel failed");
    $out = [];
    while (($name = readdir($dir)) !== false) {
        if ($name === "." || $name === "..") continue;
        $path = $rel === "" ? $name : "$rel/$name";
        $st = ssh2_sftp_stat($sftp, remote($path));
        if ($st === false) fail("stat $path failed");
        $out[] = [$name, $st["size"], ($st["mode"] & 0170000) === 0040000];
    }
    closedir($dir);
    return $out;
}

function download($rel, $local) {
    if (!mkdir($local)) fail("local mkdir $local failed");
    foreach (listing($rel) as [$name, $size, $is_dir]) {
        if ($is_dir) {
            download("$rel/$name", "$local/$name");
        } else {
            copy_stream(url("$rel/$name"), "$local/$name");
        }
    }
}

switch ($step) {
case "upload":
    upload($args[0], $args[1]);
    break;
case "list":
    $out = [];
    foreach ($args as $rel) $out[$rel] = listing($rel);
    echo json_encode($out), "\n";
    break;
case "download":
    download($args[0], $args[1]);
    break;
case "rename":
    if (!ssh2_sftp_rename($sftp, remote($args[0]), remote($args[1]))) fail("rename failed");
    break;
case "delete":
    $split = array_search("--", $args, true);
    foreach (array_slice($args, 0, $split) as $f) {
        if (!ssh2_sftp_unlink($sftp, remote($f))) fail("unlink $f failed");
    }
    foreach (array_slice($args, $split + 1) as $d) {
        if (!ssh2_sftp_rmdir($sftp, remote($d))) fail("rmdir $d failed");
    }
    break;
default:
    fail("unknown step $step");
}
