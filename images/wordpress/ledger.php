<?php
/*
 * Plugin Name: berth ledger (test release 6.1-p2)
 * Description: A must-use plugin whose first load migrates the database: it creates the table
 * {prefix}berth_ledger and records the release, as a real plugin's activation would.
 */
add_action('init', function () {
	global $wpdb;
	if (get_option('berth_ledger_version') === '2') {
		return;
	}
	$t = $wpdb->prefix . 'berth_ledger';
	$wpdb->query("CREATE TABLE IF NOT EXISTS `$t` (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(100) NOT NULL)");
	$wpdb->insert($t, array('note' => 'migrated to 6.1-p2'));
	update_option('berth_ledger_version', '2');
});
