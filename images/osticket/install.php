<?php
// berth's stand-in for the `osticket/osticket` image, run by /bin/start.sh as root at every
// start: writes include/ost-config.php from the environment (0640 root:www-data, in
// /run/osticket), waits for the database, and installs the help desk with osTicket's own
// installer when the database holds no installation. With --pending-upgrade it only prints
// whether the database's schema is older than this release's code ("yes" or "no").

const ROOT = '/var/www/html/';
const RUN = '/run/osticket/';

function env_or(string $k, string $d = ''): string {
    $v = getenv($k);
    return ($v === false || $v === '') ? $d : $v;
}

function fail(string $m): void {
    fwrite(STDERR, "osticket-install: $m\n");
    exit(1);
}

$vars = [
    'name' => env_or('INSTALL_NAME', 'My Helpdesk'),
    'email' => env_or('INSTALL_EMAIL', 'helpdesk@example.com'),
    'fname' => env_or('ADMIN_FIRSTNAME', 'Admin'),
    'lname' => env_or('ADMIN_LASTNAME', 'User'),
    'admin_email' => env_or('ADMIN_EMAIL', 'admin@example.com'),
    'username' => env_or('ADMIN_USERNAME', 'ostadmin'),
    'passwd' => env_or('ADMIN_PASSWORD', 'Admin1'),
    'prefix' => env_or('MYSQL_PREFIX', 'ost_'),
    'dbhost' => env_or('MYSQL_HOST', 'mysql'),
    'dbname' => env_or('MYSQL_DATABASE', 'osticket'),
    'dbuser' => env_or('MYSQL_USER', 'osticket'),
    'dbpass' => env_or('MYSQL_PASSWORD'),
    'timezone' => env_or('TZ', 'UTC'),
    'lang_id' => 'en_US',
];
$vars['passwd2'] = $vars['passwd'];
$url = env_or('INSTALL_URL', 'http://localhost/');
$secret = env_or('INSTALL_SECRET');
if ($secret === '') fail('INSTALL_SECRET is required (it encrypts what osTicket stores)');
if ($vars['dbpass'] === '') fail('MYSQL_PASSWORD is required');
if (!preg_match('/^[A-Za-z0-9_]+$/', $vars['prefix'])) fail('MYSQL_PREFIX: letters, digits and _ only');

// The installer reads the request's host and scheme for the help desk's URL.
$u = parse_url($url) ?: [];
$_SERVER['HTTP_HOST'] = ($u['host'] ?? 'localhost') . (isset($u['port']) ? ':' . $u['port'] : '');
$_SERVER['PHP_SELF'] = '/setup/install.php';
$_SERVER['SCRIPT_NAME'] = '/setup/install.php';
if (($u['scheme'] ?? 'http') === 'https') $_SERVER['HTTPS'] = 'on';

// The config file, from osTicket's own sample, rewritten at every start.
$sample = file_get_contents(ROOT . 'include/ost-sampleconfig.php');
if ($sample === false) fail('no include/ost-sampleconfig.php in the release');
$config = strtr($sample, [
    "define('OSTINSTALLED',FALSE);" => "define('OSTINSTALLED',TRUE);",
    '%ADMIN-EMAIL' => addslashes($vars['admin_email']),
    '%CONFIG-DBHOST' => addslashes($vars['dbhost']),
    '%CONFIG-DBNAME' => addslashes($vars['dbname']),
    '%CONFIG-DBUSER' => addslashes($vars['dbuser']),
    '%CONFIG-DBPASS' => addslashes($vars['dbpass']),
    '%CONFIG-PREFIX' => $vars['prefix'],
    '%CONFIG-SIRI' => addslashes($secret),
]);
$proxies = env_or('TRUSTED_PROXIES');
if ($proxies !== '') {
    $config = str_replace("define('TRUSTED_PROXIES', '');", "define('TRUSTED_PROXIES', '" . addslashes($proxies) . "');", $config);
}
$tmp = RUN . 'ost-config.php.tmp';
if (file_put_contents($tmp, $config) === false || !chmod($tmp, 0640) || !chgrp($tmp, 'www-data')
    || !rename($tmp, RUN . 'ost-config.php')) {
    fail('cannot write ' . RUN . 'ost-config.php');
}

chdir(ROOT . 'setup');
require ROOT . 'setup/setup.inc.php';
require_once ROOT . 'setup/inc/class.installer.php';

// The database, once it answers (its sidecar may still be starting).
$deadline = time() + 180;
while (!@db_connect($vars['dbhost'], $vars['dbuser'], $vars['dbpass'])) {
    if (time() > $deadline) fail('no database at ' . $vars['dbhost'] . ': ' . db_connect_error());
    sleep(1);
}
if (!db_select_database($vars['dbname'])) fail('cannot select database ' . $vars['dbname']);
$installed = (bool) db_query('SELECT 1 FROM `' . $vars['prefix'] . 'config` LIMIT 1', false);

if (in_array('--pending-upgrade', $argv, true)) {
    $code = trim((string) file_get_contents(ROOT . 'include/upgrader/streams/core.sig'));
    $r = db_query("SELECT `value` FROM `" . $vars['prefix'] . "config` WHERE `namespace`='core' AND `key`='schema_signature'", false);
    $have = $r ? db_result($r) : '';
    echo ($installed && $have !== '' && strcasecmp($have, $code) !== 0) ? "yes\n" : "no\n";
    exit(0);
}

if ($installed) {
    echo "osticket-install: the help desk is installed\n";
} else {
    echo "osticket-install: installing the help desk into database {$vars['dbname']}\n";
    $installer = new Installer(RUN . 'ost-config.php');
    if (!$installer->install($vars)) {
        foreach ($installer->getErrors() as $k => $e) fwrite(STDERR, "osticket-install: $k: $e\n");
        fail('the installation failed');
    }
    echo "osticket-install: installed\n";
}
// The help desk's address, for links in its mail.
$stmt = sprintf(
    "UPDATE `%sconfig` SET `value`='%s' WHERE `namespace`='core' AND `key`='helpdesk_url'",
    $vars['prefix'],
    db_real_escape(rtrim($url, '/') . '/')
);
db_query($stmt, false);
